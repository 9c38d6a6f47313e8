"""A large face rendered at a bounded working resolution, then scaled up into the frame.

Every stage of the swap (warp, colour match, masks, alpha) costs in proportion to the face box's
pixels, while the detail it draws comes from the source photo's face, rarely more than a few
hundred pixels across, and its colour and masks are low-frequency. So a face box larger than
``max_px`` across is rendered from a downscaled copy of its part of the frame, and the rendered
face, its alpha and its change of shape are scaled back up by the same warps that move a kept
keyframe (reuse.py). The target's own picture under the face (kept eyes and mouth, the jaw line the
change of shape moves) is still read from the full-resolution frame, so it keeps its sharpness.
"""

from __future__ import annotations

import cv2
import numpy as np

from swaprtc.embedded.source import SourceTexture, with_ring
from swaprtc.embedded.swap import FaceLayer, render_face
from swaprtc.types import SwapOptions

MARGIN_PX = 2  # around the ring's box in the crop, frame pixels: the render clips to its frame


def render_bounded(
    frame: np.ndarray,
    mesh: np.ndarray,
    depth: np.ndarray | None,
    source: SourceTexture,
    options: SwapOptions,
    max_cells: int,
    timings: dict[str, float],
    max_px: int,
) -> tuple[FaceLayer, np.ndarray | None] | None:
    """render_face(), at most ``max_px`` across the face's box (0: always at full resolution).
    With the layer, its rendered pixels to frame pixels as a (2, 3) transform, or None when it was
    rendered in frame pixels. None when the face is too small or off-frame."""
    h, w = frame.shape[:2]
    ringed = with_ring(mesh)
    lo = np.floor(ringed.min(axis=0)).astype(int) - MARGIN_PX
    hi = np.ceil(ringed.max(axis=0)).astype(int) + MARGIN_PX + 1
    x0, y0 = max(int(lo[0]), 0), max(int(lo[1]), 0)
    x1, y1 = min(int(hi[0]), w), min(int(hi[1]), h)
    if max_px <= 0 or max(x1 - x0, y1 - y0) <= max_px or x1 - x0 < 4 or y1 - y0 < 4:
        layer = render_face(frame, mesh, depth, source, options, max_cells, timings)
        return None if layer is None else (layer, None)
    factor = max_px / max(x1 - x0, y1 - y0)
    size = (max(4, round((x1 - x0) * factor)), max(4, round((y1 - y0) * factor)))
    # Bilinear, not area (6x cheaper here): this picture only feeds thumbnails (the colour match,
    # the forehead check), which average it again; the target's own picture under the face is
    # read from the frame itself.
    small = cv2.resize(frame[y0:y1, x0:x1], size, interpolation=cv2.INTER_LINEAR)
    sx, sy = size[0] / (x1 - x0), size[1] / (y1 - y0)
    # Pixel centres: small pixel u sits at frame x0 + (u + 0.5) / sx - 0.5 (cv2.resize's convention).
    scale = np.array([sx, sy], np.float32)
    small_mesh = ((mesh[:, :2] - np.array([x0, y0], np.float32) + 0.5) * scale - 0.5).astype(np.float32)
    small_depth = None if depth is None else (depth * np.float32((sx + sy) / 2)).astype(np.float32)
    layer = render_face(
        small, np.ascontiguousarray(small_mesh), small_depth, source, options, max_cells, timings
    )
    if layer is None:
        return None
    to_frame = np.array([[1 / sx, 0.0, x0 + 0.5 / sx - 0.5], [0.0, 1 / sy, y0 + 0.5 / sy - 0.5]], np.float64)
    return layer, to_frame
