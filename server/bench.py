"""``swaprtc bench``: speed measurements as JSON.

Every comparison is measured side by side in one run (interleaved rounds), and medians are
reported, because machines here are noisy. Suites: frame_io, paste, embedded, neural.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from server.settings import Settings

SUITES = ("frame_io", "paste", "embedded", "neural")


def time_ms(fn: Callable[[], object], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000.0)
    return out


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered), 3),
        "p90_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))], 3),
        "min_ms": round(ordered[0], 3),
        "n": len(ordered),
    }


def side_by_side(
    cases: dict[str, Callable[[], object]], repeat: int, warmup: int = 2
) -> dict[str, list[float]]:
    """Interleave the cases round by round so drift in machine load hits all of them alike."""
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(repeat):
        for name, fn in cases.items():
            samples[name].extend(time_ms(fn, 1))
    return samples


def bench_frame_io(frames: int) -> dict[str, Any]:
    """Output frame construction: bgr24 VideoFrame vs I420 conversion + from_numpy_buffer."""
    from av import VideoFrame

    result: dict[str, Any] = {}
    rng = np.random.default_rng(0)
    for label, (w, h) in {"720p": (1280, 720), "1080p": (1920, 1080)}.items():
        img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)

        def via_bgr24(img: np.ndarray = img) -> object:
            return VideoFrame.from_ndarray(img, format="bgr24").reformat(format="yuv420p")

        def via_i420(img: np.ndarray = img) -> object:
            return VideoFrame.from_numpy_buffer(cv2.cvtColor(img, cv2.COLOR_BGR2YUV_I420), format="yuv420p")

        s = side_by_side({"bgr24_then_reformat": via_bgr24, "i420_from_numpy_buffer": via_i420}, frames)
        a, b = summary(s["bgr24_then_reformat"]), summary(s["i420_from_numpy_buffer"])
        result[label] = {
            "bgr24_then_reformat": a,
            "i420_from_numpy_buffer": b,
            "speedup": round(a["median_ms"] / max(b["median_ms"], 1e-6), 2),
        }
    return result


def machine_info() -> dict[str, Any]:
    import onnxruntime as ort

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "onnxruntime": ort.__version__,
        "available_providers": ort.get_available_providers(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def run_bench(args: argparse.Namespace, settings: Settings) -> int:
    wanted = SUITES if args.suite == "all" else tuple(s.strip() for s in args.suite.split(","))
    unknown = [s for s in wanted if s not in SUITES]
    if unknown:
        print(f"swaprtc bench: unknown suite(s) {unknown}; choose from {list(SUITES)}", file=sys.stderr)
        return 2
    report: dict[str, Any] = {"machine": machine_info(), "frames": args.frames, "results": {}}
    runners: dict[str, Callable[[], dict[str, Any]]] = {
        "frame_io": lambda: bench_frame_io(args.frames),
        "paste": lambda: _bench_paste(args.frames),
        "embedded": lambda: _bench_embedded(args.frames, settings),
        "neural": lambda: _bench_neural(args.frames, settings),
    }
    for name in wanted:
        try:
            report["results"][name] = runners[name]()
        except Exception as exc:  # a missing optional model must not hide the other suites
            report["results"][name] = {"skipped": f"{type(exc).__name__}: {exc}"}
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")
    return 0


def _bench_paste(frames: int) -> dict[str, Any]:
    raise NotImplementedError("paste suite not wired yet")


def _bench_embedded(frames: int, settings: Settings) -> dict[str, Any]:
    raise NotImplementedError("embedded suite not wired yet")


def _bench_neural(frames: int, settings: Settings) -> dict[str, Any]:
    raise NotImplementedError("neural suite not wired yet")
