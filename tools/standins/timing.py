"""Wall-clock timing of an ONNX model with ONNX Runtime on CPU."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort


def random_feed(session: ort.InferenceSession, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One random float32 tensor per input; symbolic dimensions (a dynamic batch) become 1."""
    feed = {}
    for arg in session.get_inputs():
        shape = [dim if isinstance(dim, int) else 1 for dim in arg.shape]
        feed[arg.name] = rng.standard_normal(shape).astype(np.float32)
    return feed


def time_model(path: Path, runs: int = 3) -> float:
    """Median seconds per call over `runs` calls after one warm-up call."""
    options = ort.SessionOptions()
    options.log_severity_level = 3  # InSwapper's unused emap initializer is expected, not worth a warning
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = random_feed(session, np.random.default_rng(0))
    session.run(None, feed)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - start)
    return statistics.median(times)
