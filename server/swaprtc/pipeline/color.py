"""Colour correction: give a swapped face the target's colour and lighting.

The swapper paints the source's skin tone and its own idea of light; matching the swapped crop's
mean and spread per channel in CIELAB to the target crop's (Reinhard et al.'s colour transfer),
measured over the central face only, makes it sit in the target's light. Pure functions of arrays.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

MIN_STD = 1.0  # a flat channel (std ~0) is shifted, never stretched


@lru_cache(maxsize=8)
def face_weights(size: int) -> np.ndarray:
    """Where the face is in an aligned crop: an ellipse over the middle (read-only, cached)."""
    mask = np.zeros((size, size), np.float32)
    cv2.ellipse(
        mask, (size // 2, round(size * 0.55)), (round(size * 0.32), round(size * 0.4)), 0, 0, 360, 1.0, -1
    )
    mask.setflags(write=False)
    return mask


def _stats(lab: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = weights.reshape(-1, 1)
    total = max(float(w.sum()), 1e-6)
    pixels = lab.reshape(-1, 3)
    mean = (pixels * w).sum(axis=0) / total
    std = np.sqrt((((pixels - mean) ** 2) * w).sum(axis=0) / total)
    return mean, std


def match_color(swapped: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """``swapped`` (BGR uint8) recoloured so its face statistics match ``target``'s (same size)."""
    weights = face_weights(swapped.shape[0]) if weights is None else weights
    src = cv2.cvtColor(swapped, cv2.COLOR_BGR2LAB).astype(np.float32)
    ref = cv2.cvtColor(target, cv2.COLOR_BGR2LAB).astype(np.float32)
    src_mean, src_std = _stats(src, weights)
    ref_mean, ref_std = _stats(ref, weights)
    scale = np.where(src_std < MIN_STD, 1.0, ref_std / np.maximum(src_std, MIN_STD))
    out = (src - src_mean) * scale + ref_mean
    return cv2.cvtColor(np.clip(out + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_LAB2BGR)
