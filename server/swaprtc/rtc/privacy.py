"""Hiding faces: the fallback whenever a swapped frame is not available for a frame with a face.

Pixelation with coarse blocks is cheap (two resizes of the face region) and, unlike a light blur,
leaves no recognisable identity. Regions are enlarged by a margin so hair line, chin and a face
that moved a little since detection stay covered.
"""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

from swaprtc.types import Face

MARGIN = 0.35  # fraction of the box size added on every side
BLOCKS = 8  # pixel blocks across a hidden region
FRAME_BLOCKS = 12  # pixel blocks across the whole frame when no face position is known


def expand_box(bbox: np.ndarray, shape: tuple[int, ...], margin: float = MARGIN) -> tuple[int, int, int, int]:
    """Grow a box by ``margin`` of its size on each side, clipped to the frame; integer pixels."""
    h, w = shape[:2]
    x1, y1, x2, y2 = (float(v) for v in bbox[:4])
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    return (
        int(np.clip(np.floor(x1 - mx), 0, w)),
        int(np.clip(np.floor(y1 - my), 0, h)),
        int(np.clip(np.ceil(x2 + mx), 0, w)),
        int(np.clip(np.ceil(y2 + my), 0, h)),
    )


def pixelate(region: np.ndarray, blocks: int) -> np.ndarray:
    h, w = region.shape[:2]
    if h == 0 or w == 0:
        return region
    bw, bh = max(1, min(blocks, w)), max(1, min(blocks, round(blocks * h / max(w, 1))))
    small = cv2.resize(region, (bw, bh), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


def hide_faces(
    frame: np.ndarray, faces: Iterable[Face], margin: float = MARGIN, *, copy: bool = True
) -> np.ndarray:
    """``frame`` with every face region pixelated: a copy, or ``frame`` itself with ``copy=False``
    (for a frame the caller owns, which saves a full-frame copy per frame)."""
    out = frame.copy() if copy else frame
    for face in faces:
        x1, y1, x2, y2 = expand_box(face.bbox, frame.shape, margin)
        if x2 > x1 and y2 > y1:
            out[y1:y2, x1:x2] = pixelate(out[y1:y2, x1:x2], BLOCKS)
    return out


def hide_frame(frame: np.ndarray) -> np.ndarray:
    """The whole frame pixelated: used when no face position can be trusted."""
    return pixelate(frame, FRAME_BLOCKS)
