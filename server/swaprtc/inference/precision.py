"""Whether InSwapper runs in fp16: only on a GPU provider really in use, and only when the fp16
model reproduces the fp32 one on a fixed crop at load time.

fp16 halves the weights' memory and is much faster on tensor cores, but on a CPU it is slower, and
a badly converted fp16 export can drift visibly (saturated colours, blotches). The bound below is on
InSwapper's output in [0, 1]: the worst pixel may differ by 0.03 (about 8 grey levels) and the mean
by 0.004 (about one grey level).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from swaprtc.inference.runner import ModelRunner

FP16_MODES = ("auto", "on", "off")
FP16_MAX_ABS = 0.03
FP16_MEAN_ABS = 0.004


@dataclass(frozen=True)
class Fp16Check:
    passed: bool
    max_abs: float
    mean_abs: float

    def describe(self) -> dict[str, object]:
        return {
            "passed": self.passed,
            "max_abs": round(self.max_abs, 5),
            "mean_abs": round(self.mean_abs, 6),
            "bound": {"max_abs": FP16_MAX_ABS, "mean_abs": FP16_MEAN_ABS},
        }


def fp16_wanted(mode: str, gpu_in_use: bool, fp16_available: bool) -> tuple[bool, str]:
    """Whether to try the fp16 model at all, and why (for /api/info). ``gpu_in_use`` must come
    from a loaded session's providers, not from the preference list."""
    if mode not in FP16_MODES:
        raise ValueError(f"fp16 must be one of {FP16_MODES}, got {mode!r}")
    if mode == "off":
        return False, "fp16 off by setting"
    if not fp16_available:
        return False, "no fp16 model present"
    if mode == "auto" and not gpu_in_use:
        return False, "no GPU provider in use (read back from the session): fp16 is slower on a CPU"
    return True, "fp16 asked for" if mode == "on" else "GPU provider in use"


def check_crop(size: int = 128) -> np.ndarray:
    """A fixed BGR uint8 crop with smooth shading and fine texture, the same on every machine."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    rng = np.random.default_rng(1234)
    base = np.stack([0.35 + 0.4 * xx, 0.3 + 0.3 * yy, 0.55 - 0.2 * xx * yy], axis=-1)
    noise = rng.normal(0.0, 0.04, (size, size, 3)).astype(np.float32)
    return (np.clip(base + noise, 0, 1) * 255 + 0.5).astype(np.uint8)


def check_latent(dim: int = 512) -> np.ndarray:
    v = np.random.default_rng(4321).standard_normal((1, dim)).astype(np.float32)
    return v / np.linalg.norm(v)


def _cast(runner: ModelRunner, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    types = {s.name: s.dtype for s in runner.inputs}
    return {k: np.ascontiguousarray(v, dtype=types.get(k, v.dtype)) for k, v in feeds.items()}


def compare_fp16(fp32: ModelRunner, fp16: ModelRunner, feeds: dict[str, np.ndarray]) -> Fp16Check:
    """Run both models on the same inputs (each in its own input types) and bound the difference."""
    ref = np.asarray(fp32.run(_cast(fp32, feeds))[0], dtype=np.float32)
    got = np.asarray(fp16.run(_cast(fp16, feeds))[0], dtype=np.float32)
    if ref.shape != got.shape or not np.isfinite(got).all():
        return Fp16Check(False, float("inf"), float("inf"))
    diff = np.abs(np.clip(ref, 0, 1) - np.clip(got, 0, 1))
    max_abs, mean_abs = float(diff.max()), float(diff.mean())
    return Fp16Check(max_abs <= FP16_MAX_ABS and mean_abs <= FP16_MEAN_ABS, max_abs, mean_abs)
