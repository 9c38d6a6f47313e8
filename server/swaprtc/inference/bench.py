"""``swaprtc bench --suite gpu``: the neural engine's speed on one GPU (or on whatever runs).

Per-stage p50/p95, one session's frame rate and added latency on a 720p frame with one face, and
faces per second aggregated over 1, 4, 16 and 64 concurrent streams with and without the
cross-session batch scheduler, plus the GPU memory this process holds when CUDA runs.

This module imports only numpy, opencv, onnx, onnxruntime and the pipeline (no aiortc, no PyAV),
so it runs on a bare device image. Models: the real weights when the models folder has them, else
random-weight stand-ins with the real architectures (tools/build_standins.py), else nothing; tests
pass tiny contract models for a CI-sized run.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from swaprtc.inference.loader import NeuralRunners, local_neural_runners, neural_batching, neural_tracking
from swaprtc.inference.runner import describe_runner
from swaprtc.pipeline.neural import NeuralEngine, Tracking
from swaprtc.settings import Settings
from swaprtc.types import SourceFace, SwapOptions

STANDINS_DIR = Path(os.environ.get("SWAPRTC_STANDINS_DIR", Path.home() / ".cache/swaprtc/standins"))
REPO_DATA = Path(__file__).resolve().parents[3] / "tests" / "data"
NEURAL_MODELS = ("w600k_r50", "inswapper_128")
# Stand-in file per model name (tools/standins/specs.py); the small embedded models are real.
STANDIN_FILES = {
    "det_10g": "det_10g.onnx",
    "w600k_r50": "w600k_r50.onnx",
    "inswapper_128": "inswapper_128.onnx",
    "inswapper_128_fp16": "inswapper_128_fp16.onnx",
    "gfpgan_1.4": "GFPGANv1.4.onnx",
}
STREAM_LEVELS = (1, 4, 16, 64)


class FolderModels:
    """The slice of ModelStore the loader uses, over files that are already here (stand-ins)."""

    def __init__(self, models_dir: Path, files: dict[str, Path]) -> None:
        self.models_dir = models_dir
        self.files = {name: path for name, path in files.items() if path.is_file()}

    def available(self, name: str) -> bool:
        return name in self.files

    def path(self, name: str) -> Path:
        if name not in self.files:
            raise FileNotFoundError(f"no {name} model among {sorted(self.files)}")
        return self.files[name]

    ensure = path


def model_source(settings: Settings, weights: str = "auto") -> tuple[Any, str]:
    """(store, label): the models folder when it has the real neural weights, else the stand-ins."""
    from swaprtc.models.store import ModelStore

    store = ModelStore(settings.models_dir, settings.providers, allow_download=settings.auto_download)
    if weights in ("auto", "real") and all(store.available(n) for n in NEURAL_MODELS):
        return store, "real weights"
    if weights == "real":
        raise FileNotFoundError(f"real neural weights not in {settings.models_dir}")
    if not (STANDINS_DIR / STANDIN_FILES["inswapper_128"]).is_file():
        raise FileNotFoundError(
            f"no neural models in {settings.models_dir} and no stand-ins in {STANDINS_DIR}: "
            "run `python tools/build_standins.py` (needs `pip install torch==2.13.0`)"
        )
    files = {name: STANDINS_DIR / file for name, file in STANDIN_FILES.items()}
    for small in ("retinaface_mnet025", "face_landmark"):
        files[small] = store.ensure(small)
    return FolderModels(settings.models_dir, files), f"random-weight stand-ins from {STANDINS_DIR}"


@dataclass
class BenchModels:
    """Loaded once; each measurement builds its engine variant over the same runners."""

    runners: NeuralRunners
    tracking: Tracking | None
    settings: Settings
    label: str

    def engine(self, batching: bool) -> NeuralEngine:
        batch = neural_batching(self.runners, self.settings) if batching else None
        if batch is not None:
            # Throughput is measured without the live swap deadline (a live frame past it goes out
            # with its faces hidden); the latency percentiles say how often it would be missed.
            batch = replace(batch, timeout_s=None)
        return NeuralEngine.from_runners(self.runners, tracking=self.tracking, batching=batch)


def load_models(settings: Settings, weights: str = "auto") -> BenchModels:
    store, label = model_source(settings, weights)
    return BenchModels(
        local_neural_runners(store, settings), neural_tracking(store, settings), settings, label
    )


def photo(name: str) -> np.ndarray:
    image = cv2.imread(str(REPO_DATA / name))
    if image is None:
        raise FileNotFoundError(f"bench photo {REPO_DATA / name} missing (run from a source checkout)")
    return image


def webcam_frame(face_photo: np.ndarray, size: tuple[int, int] = (1280, 720)) -> np.ndarray:
    """A frame of ``size`` with the photo scaled to 90 % of its height (the face ~40 %), centred."""
    w, h = size
    scale = 0.9 * h / face_photo.shape[0]
    img = cv2.resize(face_photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    frame = np.full((h, w, 3), 90, np.uint8)
    ih, iw = min(img.shape[0], h), min(img.shape[1], w)
    y0, x0 = (h - ih) // 2, (w - iw) // 2
    frame[y0 : y0 + ih, x0 : x0 + iw] = img[:ih, :iw]
    return frame


def percentiles(samples: Sequence[float]) -> dict[str, float]:
    ordered = sorted(samples)
    if not ordered:
        return {"p50_ms": 0.0, "p95_ms": 0.0, "n": 0}
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50_ms": round(statistics.median(ordered), 3), "p95_ms": round(p95, 3), "n": len(ordered)}


def bench_single(
    engine: NeuralEngine, source: SourceFace, frame: np.ndarray, frames: int, options: SwapOptions
) -> dict[str, Any]:
    """One session, frames back to back: per-stage p50/p95, frames/s and added latency."""
    stream = engine.open_stream()
    stream.process(frame, source, options, timestamp_s=0.0)  # warm-up (CUDA graphs capture here)
    per_stage: dict[str, list[float]] = {}
    latency: list[float] = []
    swapped = 0
    start = time.perf_counter()
    for i in range(frames):
        t0 = time.perf_counter()
        result = stream.process(frame, source, options, timestamp_s=(i + 1) / 30)
        latency.append((time.perf_counter() - t0) * 1000)
        swapped += result.swapped
        for stage, ms in result.timings_ms.items():
            per_stage.setdefault(stage, []).append(ms)
    elapsed = time.perf_counter() - start
    return {
        "stages": {k: percentiles(v) for k, v in per_stage.items()},
        "fps": round(frames / elapsed, 2),
        "added_latency": percentiles(latency),
        "faces_swapped": swapped,
        "frames": frames,
    }


def bench_streams(
    engine: NeuralEngine,
    source: SourceFace,
    frame: np.ndarray,
    streams: int,
    seconds: float,
    options: SwapOptions,
) -> dict[str, Any]:
    """``streams`` sessions, each on its own thread with its own stream, for about ``seconds``."""
    processors = [engine.open_stream() for _ in range(streams)]
    counts = [0] * streams
    frames_done = [0] * streams
    latency: list[list[float]] = [[] for _ in range(streams)]
    clock = [0.0, 0.0]  # start, stop: set once every stream is warm, before any is released

    def go() -> None:
        clock[0] = time.perf_counter()
        clock[1] = clock[0] + seconds

    start_gate = threading.Barrier(streams, action=go)

    def worker(i: int) -> None:
        # Every stream's first frame runs the detector (and fills CUDA graphs): not counted.
        processors[i].process(frame, source, options, timestamp_s=0.0)
        start_gate.wait()
        n = 0
        while n == 0 or time.perf_counter() < clock[1]:
            t0 = time.perf_counter()
            result = processors[i].process(frame, source, options, timestamp_s=(n + 1) / 30)
            latency[i].append((time.perf_counter() - t0) * 1000)
            counts[i] += result.swapped
            n += 1
        frames_done[i] = n

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - clock[0]
    out: dict[str, Any] = {
        "faces_per_s": round(sum(counts) / elapsed, 2),
        "frames_per_s_per_stream": round(sum(frames_done) / elapsed / streams, 2),
        "latency": percentiles([x for lat in latency for x in lat]),
        "seconds": round(elapsed, 2),
    }
    if engine.batching is not None:
        swapper = engine.batching.schedulers.get("swapper")
        if swapper is not None:
            out["swapper_batching"] = swapper.describe()["batching"]
    return out


def gpu_memory_mib(pid: int | None = None) -> dict[str, Any]:
    """This process's GPU memory as nvidia-smi reports it; why not, where it cannot."""
    pid = os.getpid() if pid is None else pid
    rss_mib = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return {"gpu_mib": None, "why": "no nvidia-smi here", "max_rss_mib": rss_mib}
    try:
        text = subprocess.run(
            [smi, "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return {"gpu_mib": None, "why": f"nvidia-smi failed: {exc}", "max_rss_mib": rss_mib}
    used = [
        int(cols[1])
        for line in text.splitlines()
        if len(cols := [c.strip() for c in line.split(",")]) == 2
        and cols[0] == str(pid)
        and cols[1].isdigit()
    ]
    return {"gpu_mib": sum(used) if used else 0, "max_rss_mib": rss_mib}


def run_gpu_suite(
    models: BenchModels,
    *,
    frames: int = 30,
    levels: Sequence[int] = STREAM_LEVELS,
    seconds: float = 5.0,
    enhance: bool = False,
    source_photo: np.ndarray | None = None,
    target_photo: np.ndarray | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The whole suite as one JSON-ready dict."""
    say = progress or (lambda _msg: None)
    source_img = source_photo if source_photo is not None else photo("astronaut.png")
    target = webcam_frame(target_photo if target_photo is not None else photo("grace_hopper.jpg"))
    options = SwapOptions(enhance=enhance)
    plain = models.engine(batching=False)
    source = plain.prepare_source(source_img)
    info = plain.describe()
    report: dict[str, Any] = {
        "weights": models.label,
        "frame": [target.shape[1], target.shape[0]],
        "faces_per_frame": 1,
        "enhance": enhance,
        "detect_every": models.settings.detect_every,
        "providers": info["providers"],
        "runners": info["runners"],
        "gpu": info["gpu"],
    }
    say("single session")
    report["single_session"] = bench_single(plain, source, target, frames, options)
    report["streams"] = {}
    for level in levels:
        row: dict[str, Any] = {}
        for batched in (False, True):
            say(f"{level} streams, batching {'on' if batched else 'off'}")
            engine = models.engine(batching=batched) if batched else plain
            try:
                row["batched" if batched else "unbatched"] = bench_streams(
                    engine, source, target, level, seconds, options
                )
            finally:
                if engine.batching is not None:
                    engine.batching.close()
        report["streams"][str(level)] = row
    report["memory"] = gpu_memory_mib()
    report["swapper"] = describe_runner(models.runners.swapper)
    return report
