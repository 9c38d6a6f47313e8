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

from swaprtc.inference.local import OrtRunner
from swaprtc.inference.runner import ModelRunner
from swaprtc.inference.sessions import RuntimeOptions, create_session

if TYPE_CHECKING:
    from swaprtc.models.store import ModelStore
    from swaprtc.settings import Settings

log = logging.getLogger(__name__)

TRT_CACHE_DIR = "trt-cache"


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
        trt_fp16=settings.fp16 != "off",
    )


def load_runner(
    model: Path | bytes,
    settings: Settings,
    options: RuntimeOptions,
    *,
    label: str,
    fixed_shape: bool = False,
) -> OrtRunner:
    """One local runner. ``fixed_shape`` models (swapper, enhancer) may get a CUDA graph."""
    opts = replace(options, cuda_graph=settings.cuda_graph and fixed_shape)
    session = create_session(model, opts, label=label)
    return OrtRunner(session, io_binding=settings.io_binding, max_batch=settings.max_batch, label=label)


def local_neural_runners(store: ModelStore, settings: Settings) -> NeuralRunners:
    """Load every neural model once from ``store``. Raises ModelError when a required one is missing."""
    from swaprtc.pipeline.swapper import load_emap

    options = runtime_options(settings, store.models_dir)
    det_name = "det_10g" if settings.detector == "scrfd" else "retinaface_mnet025"
    detector = load_runner(store.ensure(det_name), settings, options, label=det_name)
    embedder = load_runner(store.ensure("w600k_r50"), settings, options, label="w600k_r50")
    swap_name = "inswapper_128"
    swap_path = store.ensure(swap_name)
    swapper = load_runner(swap_path, settings, options, label=swap_name, fixed_shape=True)
    enhancer = None
    models = {"detector": det_name, "embedder": "w600k_r50", "swapper": swap_name}
    if store.available("gfpgan_1.4"):
        enhancer = load_runner(
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
        emap=load_emap(swap_path),
        enhancer=enhancer,
        models=models,
    )
