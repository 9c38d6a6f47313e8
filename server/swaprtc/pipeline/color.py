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
def face_mask(size: int) -> np.ndarray:
    """Where the face is in an aligned crop: an ellipse over the middle (uint8 0/1, read-only, cached)."""
    mask = np.zeros((size, size), np.uint8)
    cv2.ellipse(
        mask, (size // 2, round(size * 0.55)), (round(size * 0.32), round(size * 0.4)), 0, 0, 360, 1, -1
    )
    mask.setflags(write=False)
    return mask


def match_color(swapped: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """``swapped`` (BGR uint8) recoloured so its face statistics match ``target``'s (same size).

    ``mask`` (uint8, non-zero = face) says where the statistics are measured.
    """
    mask = face_mask(swapped.shape[0]) if mask is None else mask
    src = cv2.cvtColor(swapped, cv2.COLOR_BGR2LAB)
    ref = cv2.cvtColor(target, cv2.COLOR_BGR2LAB)
    src_mean, src_std = (v.reshape(3) for v in cv2.meanStdDev(src, mask=mask))
    ref_mean, ref_std = (v.reshape(3) for v in cv2.meanStdDev(ref, mask=mask))
    scale = np.where(src_std < MIN_STD, 1.0, ref_std / np.maximum(src_std, MIN_STD)).astype(np.float32)
    offset = (ref_mean - src_mean * scale + 0.5).astype(np.float32)  # +0.5: round on the way back
    out = src.astype(np.float32) * scale + offset
    return cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_LAB2BGR)
