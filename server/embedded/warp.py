"""Piecewise-affine warp of a source texture onto a target mesh, vectorised.

All triangles are rasterised at once on a coarse grid over the target face box: every triangle's
bounding-box pixels are generated together (ragged-to-flat with ``np.repeat``), barycentric
coordinates decide which pixels each triangle owns, and the owned pixels receive the matching
source coordinates. A piecewise-affine map is continuous across shared triangle edges, so
bilinearly upsampling the coarse map to full resolution is a close approximation; one
``cv2.remap`` then resamples the texture. No Python loop runs per triangle.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

OUTSIDE = -1.0e4  # map value for pixels no triangle covers: remap reads the border there
_EPS = 1e-4


@dataclass(frozen=True)
class Grid:
    """A coarse sampling grid over the integer frame box ``x0, y0, x1, y1`` (exclusive ends):
    grid point (i, j) sits at frame pixel (x0 + j * step, y0 + i * step)."""

    x0: int
    y0: int
    x1: int
    y1: int
    step: float

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the full-resolution box."""
        return self.x1 - self.x0, self.y1 - self.y0

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of the coarse grid, covering the whole box."""
        w, h = self.size
        return int(np.floor((h - 1) / self.step)) + 2, int(np.floor((w - 1) / self.step)) + 2

    def to_grid(self, points: np.ndarray) -> np.ndarray:
        return ((points - np.array([self.x0, self.y0], dtype=np.float32)) / self.step).astype(np.float32)

    def upsample(self, coarse: np.ndarray) -> np.ndarray:
        """Bilinear resample of a coarse-grid image to the full-resolution box."""
        inv = np.array([[1.0 / self.step, 0.0, 0.0], [0.0, 1.0 / self.step, 0.0]])
        return cv2.warpAffine(coarse, inv, self.size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REPLICATE)

    def downsample(self, image: np.ndarray) -> np.ndarray:
        """Sample a full-resolution box image at the grid points (bilinear, no prefilter)."""
        fwd = np.array([[self.step, 0.0, 0.0], [0.0, self.step, 0.0]])
        rows, cols = self.shape
        return cv2.warpAffine(image, fwd, (cols, rows), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REPLICATE)


def face_grid(points: np.ndarray, frame_shape: tuple[int, ...], max_cells: int = 96) -> Grid | None:
    """The integer box around ``points`` clipped to the frame, with a step giving at most
    ``max_cells`` grid cells along its long side. None when the box is empty."""
    h, w = frame_shape[:2]
    x0, y0 = np.floor(points.min(axis=0)).astype(int)
    x1, y1 = np.ceil(points.max(axis=0)).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 - x0 < 4 or y1 - y0 < 4:
        return None
    step = max(1.0, max(x1 - x0, y1 - y0) / max_cells)
    return Grid(int(x0), int(y0), int(x1), int(y1), float(step))


def triangle_maps(
    dst: np.ndarray, src: np.ndarray, triangles: np.ndarray, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel source coordinates for a piecewise-affine warp.

    ``dst`` (N, 2): mesh in the output grid's coordinates; ``src`` (N, 2): the same mesh in source
    coordinates; ``triangles`` (K, 3) indices. Returns ``map_x, map_y`` of ``shape`` (rows, cols),
    float32, ``OUTSIDE`` where no triangle covers a pixel.
    """
    rows, cols = shape
    map_x = np.full(rows * cols, OUTSIDE, dtype=np.float32)
    map_y = np.full(rows * cols, OUTSIDE, dtype=np.float32)
    t = dst[triangles].astype(np.float32)  # (K, 3, 2)
    s = src[triangles].astype(np.float32)
    e1, e2 = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    lo = np.floor(t.min(axis=1)).astype(np.int64)
    hi = np.ceil(t.max(axis=1)).astype(np.int64)
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, np.array([cols - 1, rows - 1]))
    bw = np.clip(hi[:, 0] - lo[:, 0] + 1, 0, None)
    bh = np.clip(hi[:, 1] - lo[:, 1] + 1, 0, None)
    keep = (np.abs(det) > 1e-6) & (bw > 0) & (bh > 0)
    if not keep.any():
        return map_x.reshape(rows, cols), map_y.reshape(rows, cols)
    t, s, e1, e2, det = t[keep], s[keep], e1[keep], e2[keep], det[keep]
    lo, bw, bh = lo[keep], bw[keep], bh[keep]

    # Barycentric (l1, l2) = B @ (p - t0), with B the inverse of [e1 e2]; source = s0 + l1 d1 + l2 d2.
    inv = 1.0 / det
    b = np.stack([e2[:, 1] * inv, -e2[:, 0] * inv, -e1[:, 1] * inv, e1[:, 0] * inv], axis=1)
    d1, d2 = s[:, 1] - s[:, 0], s[:, 2] - s[:, 0]
    coef = np.concatenate([t[:, 0], b, s[:, 0], d1, d2], axis=1).astype(np.float32)  # (K, 12)

    counts = bw * bh
    tid = np.repeat(np.arange(len(counts)), counts)
    starts = np.cumsum(counts) - counts
    local = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(starts, counts)
    width = bw[tid]
    px = lo[tid, 0] + local % width
    py = lo[tid, 1] + local // width
    c = coef[tid]
    dx = px.astype(np.float32) - c[:, 0]
    dy = py.astype(np.float32) - c[:, 1]
    l1 = c[:, 2] * dx + c[:, 3] * dy
    l2 = c[:, 4] * dx + c[:, 5] * dy
    inside = (l1 >= -_EPS) & (l2 >= -_EPS) & (l1 + l2 <= 1.0 + _EPS)
    l1, l2, c = l1[inside], l2[inside], c[inside]
    flat = py[inside] * cols + px[inside]
    map_x[flat] = c[:, 6] + l1 * c[:, 8] + l2 * c[:, 10]
    map_y[flat] = c[:, 7] + l1 * c[:, 9] + l2 * c[:, 11]
    return map_x.reshape(rows, cols), map_y.reshape(rows, cols)


def warp_texture(
    texture: np.ndarray, texture_mesh: np.ndarray, target_mesh: np.ndarray, triangles: np.ndarray,
    grid: Grid,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The texture warped onto ``target_mesh`` over ``grid``'s box.

    Returns the warped box (H, W, 3) uint8 and the coarse maps (for sampling the texture on the grid).
    """
    map_x, map_y = triangle_maps(grid.to_grid(target_mesh), texture_mesh, triangles, grid.shape)
    full_x, full_y = grid.upsample(map_x), grid.upsample(map_y)
    warped = cv2.remap(texture, full_x, full_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return warped, map_x, map_y
