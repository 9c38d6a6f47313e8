"""The one neural-engine assembly on local ONNX Runtime: which files, which options, which runners.

``local_neural_runners`` turns the models in a ModelStore and the GPU settings into the four
runners the neural engine takes (detector, embedder, swapper, enhancer). Other runner sources
(a remote inference server) build the same ``NeuralRunners`` and the engine does not know the
difference.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx

from swaprtc.errors import ModelError
from swaprtc.inference.batch_axis import batch_fixed_at_one, batch_matches, with_dynamic_batch
from swaprtc.inference.local import OrtRunner
from swaprtc.inference.precision import check_crop, check_latent, compare_fp16, fp16_wanted
from swaprtc.inference.runner import ModelRunner
from swaprtc.inference.sessions import RuntimeOptions, create_session, gpu_in_use

if TYPE_CHECKING:
    from swaprtc.models.store import ModelStore
    from swaprtc.pipeline.neural import Batching, Tracking
    from swaprtc.settings import Settings

log = logging.getLogger(__name__)

TRT_CACHE_DIR = "trt-cache"
FP16_MODEL = "inswapper_128_fp16"


@dataclass
class NeuralRunners:
    """Everything the neural engine runs, plus what was decided while loading (for /api/info)."""

    detector: ModelRunner
    detector_kind: str  # "retinaface" | "scrfd"
    embedder: ModelRunner
    swapper: ModelRunner
    emap: np.ndarray  # InSwapper's identity map, read from the model file
    enhancer: ModelRunner | None = None
    models: dict[str, str] = field(default_factory=dict)  # stage -> model name
    decisions: dict[str, object] = field(default_factory=dict)


def runtime_options(settings: Settings, models_dir: Path | None = None) -> RuntimeOptions:
    """Session options from the settings (CUDA graphs are asked for per model, not here)."""
    folder = models_dir if models_dir is not None else settings.models_dir
    return RuntimeOptions(
        providers=tuple(settings.providers),
        trt_cache_dir=folder / TRT_CACHE_DIR if settings.trt_cache else None,
        # TensorRT's own fp16 applies to every model unchecked, so only when fp16 is forced on.
        trt_fp16=settings.fp16 == "on",
    )


def gpu_settings(settings: Settings, options: RuntimeOptions) -> dict[str, object]:
    """The GPU settings as asked for (what each runner really got is in its own description)."""
    return {
        "io_binding": settings.io_binding,
        "cuda_graph": settings.cuda_graph,
        "fp16": settings.fp16,
        "trt_cache": str(options.trt_cache_dir) if options.trt_cache_dir else None,
        "batch_window_ms": settings.batch_window_ms,
        "max_batch": settings.max_batch,
    }


def load_runner(
    model: Path | bytes,
    settings: Settings,
    options: RuntimeOptions,
    *,
    label: str,
    fixed_shape: bool = False,
    max_batch: int | None = None,
) -> OrtRunner:
    """One local runner. ``fixed_shape`` models (swapper, enhancer) may get a CUDA graph."""
    opts = replace(options, cuda_graph=settings.cuda_graph and fixed_shape)
    session = create_session(model, opts, label=label)
    limit = settings.max_batch if max_batch is None else max_batch
    return OrtRunner(session, io_binding=settings.io_binding, max_batch=limit, label=label)


def load_batchable(
    path: Path, settings: Settings, options: RuntimeOptions, *, label: str, fixed_shape: bool = False
) -> tuple[OrtRunner, dict[str, object]]:
    """A runner that takes batches when the model allows it: a model fixed at batch 1 gets a
    dynamic batch axis only when ``batch_matches`` passes on the rewritten model."""
    if settings.max_batch <= 1:
        return load_runner(path, settings, options, label=label, fixed_shape=fixed_shape), {
            "batch": "1 (max_batch is 1)"
        }
    proto = onnx.load(str(path))
    if not batch_fixed_at_one(proto):
        runner = load_runner(path, settings, options, label=label, fixed_shape=fixed_shape)
        return runner, {"batch": f"{runner.max_batch} (declared by the model)"}
    dynamic = with_dynamic_batch(proto).SerializeToString()
    del proto
    try:
        # Quiet: a graph that cannot take the batch makes onnxruntime log an error we expect.
        candidate = load_runner(
            dynamic,
            settings,
            replace(options, quiet=True),
            label=f"{label} (dynamic batch)",
            fixed_shape=fixed_shape,
        )
        passed, worst = batch_matches(candidate)
    except ModelError as exc:
        passed, worst = False, float("inf")
        log.info("%s: dynamic batch axis refused by onnxruntime: %s", label, exc.message)
    if passed:
        log.info("%s: dynamic batch axis checked (worst relative difference %.2g)", label, worst)
        return candidate, {"batch": f"{candidate.max_batch} (dynamic axis added, check passed)"}
    log.info("%s: a batch of 2 did not run or differed from two single runs: staying at batch 1", label)
    runner = load_runner(path, settings, options, label=label, fixed_shape=fixed_shape, max_batch=1)
    return runner, {"batch": "1 (a batch of 2 did not run or differed from two single runs)"}


def choose_swapper(
    store: ModelStore, settings: Settings, options: RuntimeOptions, emap: np.ndarray
) -> tuple[OrtRunner, str, dict[str, object]]:
    """The fp32 InSwapper, or the fp16 one when a GPU provider really runs it and it matches fp32
    on a fixed crop (``precision``). Returns (runner, model name, decisions for /api/info)."""
    from swaprtc.pipeline.swapper import InSwapper

    fp32, decisions = load_batchable(
        store.ensure("inswapper_128"), settings, options, label="inswapper_128", fixed_shape=True
    )
    wanted, reason = fp16_wanted(settings.fp16, gpu_in_use(fp32.session), store.available(FP16_MODEL))
    if not wanted:
        return fp32, "inswapper_128", {**decisions, "fp16": False, "fp16_reason": reason}
    fp16, fp16_batch = load_batchable(
        store.path(FP16_MODEL), settings, options, label=FP16_MODEL, fixed_shape=True
    )
    reference = InSwapper(fp32, emap)
    feeds = reference.feeds([check_crop(reference.size)], [reference.latent(check_latent(emap.shape[0]))])
    check = compare_fp16(fp32, fp16, feeds)
    info = {"fp16_check": check.describe()}
    if check.passed:
        return fp16, FP16_MODEL, {**fp16_batch, **info, "fp16": True, "fp16_reason": reason}
    log.warning("fp16 InSwapper differs from fp32 beyond the bound (%s): using fp32", check.describe())
    return fp32, "inswapper_128", {**decisions, **info, "fp16": False, "fp16_reason": "fp16 failed the check"}


def local_neural_runners(store: ModelStore, settings: Settings) -> NeuralRunners:
    """Load every neural model once from ``store``. Raises ModelError when a required one is missing."""
    from swaprtc.pipeline.swapper import load_emap

    options = runtime_options(settings, store.models_dir)
    det_name = "det_10g" if settings.detector == "scrfd" else "retinaface_mnet025"
    detector = load_runner(store.ensure(det_name), settings, options, label=det_name, max_batch=1)
    embedder, embed_info = load_batchable(store.ensure("w600k_r50"), settings, options, label="w600k_r50")
    emap = load_emap(store.ensure("inswapper_128"))
    swapper, swap_name, swap_info = choose_swapper(store, settings, options, emap)
    decisions: dict[str, object] = {
        "settings": gpu_settings(settings, options),
        "embedder": embed_info,
        "swapper": swap_info,
    }
    enhancer = None
    models = {"detector": det_name, "embedder": "w600k_r50", "swapper": swap_name}
    if store.available("gfpgan_1.4"):
        enhancer, decisions["enhancer"] = load_batchable(
            store.path("gfpgan_1.4"), settings, options, label="gfpgan_1.4", fixed_shape=True
        )
        models["enhancer"] = "gfpgan_1.4"
    else:
        log.info("gfpgan_1.4 not present: the face enhancer is off (swaprtc models download gfpgan_1.4)")
    return NeuralRunners(
        detector=detector,
        detector_kind=settings.detector,
        embedder=embedder,
        swapper=swapper,
        emap=emap,
        enhancer=enhancer,
        models=models,
        decisions=decisions,
    )


def neural_tracking(store: ModelStore, settings: Settings) -> Tracking | None:
    """The face mesh that follows faces between detector runs; None with ``detect_every`` 1."""
    if settings.detect_every <= 1:
        return None
    from swaprtc.embedded.engine import LANDMARK_MODEL, converted_landmark_model, make_session
    from swaprtc.embedded.landmarks import FaceMeshModel
    from swaprtc.pipeline.neural import Tracking

    path = store.ensure(LANDMARK_MODEL)
    model: Path | bytes = converted_landmark_model(path) if path.suffix == ".tflite" else path
    return Tracking(FaceMeshModel(make_session(model, threads=1)), settings.detect_every)


def neural_batching(runners: NeuralRunners, settings: Settings) -> Batching | None:
    """One scheduler per batched model, shared by every stream of this process; None when the
    batch window is 0 (every call then runs on its own, in its caller's thread)."""
    if settings.batch_window_ms <= 0:
        return None
    from swaprtc.inference.scheduler import BatchScheduler
    from swaprtc.pipeline.neural import Batching

    stages = {"embedder": runners.embedder, "swapper": runners.swapper, "enhancer": runners.enhancer}
    schedulers = {
        stage: BatchScheduler(runner, settings.batch_window_ms, settings.max_batch, name=stage)
        for stage, runner in stages.items()
        if runner is not None
    }
    return Batching(schedulers, timeout_s=settings.swap_deadline_ms / 1000.0)
