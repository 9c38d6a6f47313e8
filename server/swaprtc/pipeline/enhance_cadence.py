"""Enhance every Nth frame: run the (slow) face enhancer on one frame in N and, in between, paste
the last restored face again at the face's current alignment, so the frame rate holds while the
face keeps its restored look. Per-stream state, one instance per NeuralStream; not thread-safe.
"""

from __future__ import annotations

import numpy as np


def mix(restored: np.ndarray, crop: np.ndarray, blend: float) -> np.ndarray:
    """``blend`` of the restored crop over the current one (1 = fully restored)."""
    b = float(np.clip(blend, 0.0, 1.0))
    if b >= 1.0:
        return restored
    return (restored.astype(np.float32) * b + crop.astype(np.float32) * (1.0 - b) + 0.5).astype(np.uint8)


class EnhanceCadence:
    def __init__(self) -> None:
        self.frame = 0
        self.restored: dict[int, np.ndarray] = {}  # face slot (largest first) -> last restored crop

    def reset(self) -> None:
        self.frame = 0
        self.restored.clear()

    def tick(self, every: int) -> bool:
        """Advance one frame; True when the enhancer runs on this one."""
        run = self.frame % max(1, every) == 0
        self.frame += 1
        return run

    def reuse(self, slot: int, run_now: bool) -> np.ndarray | None:
        """The crop to paste without running the enhancer, or None when it must run."""
        return None if run_now else self.restored.get(slot)

    def remember(self, slot: int, restored: np.ndarray, slots: int) -> None:
        self.restored[slot] = restored
        for stale in [s for s in self.restored if s >= slots]:
            del self.restored[stale]
