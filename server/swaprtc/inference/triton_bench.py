"""``swaprtc bench --suite triton --inference-url grpc://HOST:PORT``: what a call to the shared
inference tier costs, side by side with and without Triton's system shared memory.

Per model (detector, embedder, swapper, enhancer when served): the round-trip p50/p95 of one call
with the input the pipeline really sends, both transports interleaved call by call so the
machine's load falls on both alike. ``--suite gpu`` with ``--inference-url`` measures the whole
engine on the tier instead (``triton_models``).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np

from swaprtc.inference.bench import BenchModels, percentiles
from swaprtc.inference.loader import NeuralRunners, neural_tracking
from swaprtc.inference.runner import ModelRunner
from swaprtc.inference.triton import PixelInputRunner, triton_neural_runners
from swaprtc.settings import Settings


def triton_models(settings: Settings) -> BenchModels:
    """The gpu suite's models on the inference server (tracking stays local, as when serving)."""
    from swaprtc.models.store import ModelStore

    store = ModelStore(settings.models_dir, settings.providers, allow_download=settings.auto_download)
    runners = triton_neural_runners(settings)
    return BenchModels(
        runners, neural_tracking(store, settings), settings, f"Triton at {settings.inference_url}"
    )


def _feeds(runner: ModelRunner, rng: np.random.Generator, size: int) -> dict[str, np.ndarray]:
    """One batch-1 input of the runner's shapes (dynamic sides ``size``), in the pipeline's range."""
    feeds = {}
    for spec in runner.inputs:
        shape = [1, *[d if d is not None else size for d in spec.shape[1:]]]
        feeds[spec.name] = rng.random(shape).astype(spec.dtype)
    return feeds


def _stages(runners: NeuralRunners) -> dict[str, ModelRunner]:
    stages = {"detector": runners.detector, "embedder": runners.embedder, "swapper": runners.swapper}
    if runners.enhancer is not None:
        stages["enhancer"] = runners.enhancer
    return stages


def run_triton_suite(settings: Settings, calls: int = 30) -> dict[str, Any]:
    if not settings.inference_url:
        raise ValueError("the triton suite needs --inference-url grpc://HOST:PORT")
    modes = {"shared_memory": "on", "grpc": "off"}
    runners = {
        label: triton_neural_runners(replace(settings, inference_shared_memory=mode))
        for label, mode in modes.items()
    }
    rng = np.random.default_rng(0)
    report: dict[str, Any] = {"url": settings.inference_url, "calls": calls, "stages": {}}
    for stage in _stages(runners["grpc"]):
        feeds = _feeds(_stages(runners["grpc"])[stage], rng, 640)
        # Detectors travel as uint8 pixels: a quarter of the float input the pipeline hands over.
        pixels = isinstance(_stages(runners["grpc"])[stage], PixelInputRunner)
        report["stages"][stage] = {
            "sent_bytes": int(sum(a.nbytes for a in feeds.values())) // (4 if pixels else 1),
            "describe": getattr(_stages(runners["grpc"])[stage], "describe", dict)(),
        }
        samples: dict[str, list[float]] = {label: [] for label in modes}
        for i in range(calls + 2):
            for label in modes:
                run = _stages(runners[label])[stage].run
                t = time.perf_counter()
                run(feeds)
                if i >= 2:  # the first calls learn output shapes and register regions
                    samples[label].append((time.perf_counter() - t) * 1000)
        for label in modes:
            report["stages"][stage][label] = percentiles(samples[label])
        shm, grpc = (report["stages"][stage][k]["p50_ms"] for k in ("shared_memory", "grpc"))
        report["stages"][stage]["grpc_over_shared_memory"] = round(grpc / shm, 2) if shm else None
    for group in runners.values():
        for runner in _stages(group).values():
            close = getattr(runner, "close", None)
            if callable(close):
                close()
    return report
