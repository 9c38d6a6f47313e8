"""One Euro filtering of a whole face mesh (Casiez et al., CHI 2012), vectorised.

Speed is measured for the mesh as a whole (mean point speed in face sizes per second), so every
point gets the same cutoff: a still face is smoothed hard (no shimmer) and a moving face follows
with little lag, and the mesh keeps its shape because all points are filtered alike.
"""

from __future__ import annotations

import math

import numpy as np


def _alpha(cutoff: float, dt: float) -> float:
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class MeshFilter:
    def __init__(self, min_cutoff: float = 0.8, beta: float = 6.0, d_cutoff: float = 2.0) -> None:
        self.min_cutoff = min_cutoff  # Hz at rest
        self.beta = beta  # cutoff increase per (face size / s) of speed
        self.d_cutoff = d_cutoff
        self._x: np.ndarray | None = None
        self._dx = 0.0
        self._t: float | None = None

    def reset(self) -> None:
        self._x, self._dx, self._t = None, 0.0, None

    def __call__(self, mesh: np.ndarray, t: float, scale: float) -> np.ndarray:
        """Filtered mesh for a raw ``mesh`` observed at time ``t`` (s); ``scale`` is the face size."""
        raw = mesh.astype(np.float64)
        if self._x is None or self._t is None or t <= self._t:
            self._x, self._t, self._dx = raw, t, 0.0
            return mesh.astype(np.float32)
        dt = t - self._t
        # Speed is measured in the image plane; extra columns (depth) are filtered alike.
        speed = float(np.linalg.norm(raw[..., :2] - self._x[..., :2], axis=-1).mean()) / max(scale, 1e-6) / dt
        self._dx += _alpha(self.d_cutoff, dt) * (speed - self._dx)
        a = _alpha(self.min_cutoff + self.beta * abs(self._dx), dt)
        self._x = self._x + a * (raw - self._x)
        self._t = t
        return self._x.astype(np.float32)
