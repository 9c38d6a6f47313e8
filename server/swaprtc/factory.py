"""Engine selection: ``--engine auto|neural|embedded``.

``auto`` picks the neural engine only where its models are present and verified AND a GPU
execution provider really runs; everywhere else the embedded engine, which needs no big download.
"""

from __future__ import annotations

import logging

from swaprtc.engine import Engine
from swaprtc.errors import ModelError
from swaprtc.inference.sessions import GPU_PROVIDERS
from swaprtc.models.store import ModelStore
from swaprtc.settings import Settings

log = logging.getLogger(__name__)

NEURAL_MODELS = ("w600k_r50", "inswapper_128")


def gpu_in_use(store: ModelStore) -> bool:
    """onnxruntime-gpu lists CUDA even without a GPU: load a small model and read back."""
    try:
        store.session("retinaface_mnet025")
    except ModelError:
        return False
    return any(p in GPU_PROVIDERS for p in store.providers_in_use("retinaface_mnet025"))


def choose_engine(settings: Settings, store: ModelStore) -> str:
    if settings.engine in ("neural", "embedded"):
        return settings.engine
    if settings.engine != "auto":
        raise ModelError(
            f"unknown engine {settings.engine!r}: use auto, neural or embedded", code="bad_engine"
        )
    if settings.inference_url:  # the neural models run on the shared inference server
        return "neural"
    if all(store.available(n) for n in NEURAL_MODELS) and gpu_in_use(store):
        return "neural"
    return "embedded"


def build_engine(settings: Settings, store: ModelStore | None = None) -> Engine:
    if store is None:
        from swaprtc.inference.loader import runtime_options

        # The same session options (TensorRT caches in the models folder, ...) for every model.
        store = ModelStore(
            settings.models_dir,
            settings.providers,
            allow_download=settings.auto_download,
            runtime=runtime_options(settings),
        )
    # The small embedded detector is needed by both engines and by the GPU probe.
    store.ensure("retinaface_mnet025")
    name = choose_engine(settings, store)
    log.info("engine: %s", name)
    if name == "neural":
        from swaprtc.pipeline.neural import NeuralEngine

        if settings.inference_url:
            from swaprtc.inference.loader import neural_batching, neural_tracking
            from swaprtc.inference.triton import triton_neural_runners

            # The models run on the inference server; tracking (the small face mesh) and the
            # process's own batching stay here, so Triton gets fewer, larger calls.
            runners = triton_neural_runners(settings)
            return NeuralEngine.from_runners(
                runners,
                tracking=neural_tracking(store, settings),
                batching=neural_batching(runners, settings),
            )
        return NeuralEngine.from_store(store, settings)
    from swaprtc.embedded.engine import EmbeddedEngine

    return EmbeddedEngine.from_store(store, settings)
