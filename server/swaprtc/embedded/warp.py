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
_BOX_PAD = 0.01  # grid cells; _EPS in barycentric units is < 1e-3 cells for triangles < 10 cells


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
        return cv2.warpAffine(
            coarse,
            inv,
            self.size,
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE,
        )


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
    dst: np.ndarray,
    src: np.ndarray,
    triangles: np.ndarray,
    shape: tuple[int, int],
    src_triangles: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel source coordinates for a piecewise-affine warp.

    ``dst`` (N, 2): mesh in the output grid's coordinates; ``src`` (N, 2): the same mesh in source
    coordinates; ``triangles`` (K, 3) indices. ``src_triangles`` (K, 3), default ``triangles``:
    the vertices each triangle reads from in ``src`` (a hidden triangle may read its mirror image).
    Returns ``map_x, map_y`` of ``shape`` (rows, cols), float32, ``OUTSIDE`` where no triangle
    covers a pixel.
    """
    return multi_maps(dst, src, triangles, shape, [(src, src_triangles)])[0]


def signed_areas(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(K,) twice each triangle's signed area: the sign is its orientation."""
    t = np.take(points, triangles, axis=0).astype(np.float32)
    e = t[:, 1:] - t[:, :1]
    return e[:, 0, 0] * e[:, 1, 1] - e[:, 0, 1] * e[:, 1, 0]


def multi_maps(
    dst: np.ndarray,
    cull_src: np.ndarray,
    triangles: np.ndarray,
    shape: tuple[int, int],
    sources: list[tuple[np.ndarray, np.ndarray | None]],
    facing: np.ndarray | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``triangle_maps`` for several source meshes at once, sharing one rasterisation of ``dst``.

    Triangles whose orientation differs between ``dst`` and ``cull_src`` are culled for all,
    unless ``facing`` (K,) bool says which triangles to draw instead.
    """
    rows, cols = shape
    # Row gathers go through np.take: several times faster than fancy indexing for these sizes.
    t = np.take(dst, triangles, axis=0).astype(np.float32)  # (K, 3, 2)
    # Only grid points are tested, so a triangle's candidates are the integer points of its box
    # (grown by far more than the barycentric tolerance reaches): 3-4x fewer than floor/ceil gives.
    low = np.minimum(np.minimum(t[:, 0], t[:, 1]), t[:, 2])
    high = np.maximum(np.maximum(t[:, 0], t[:, 1]), t[:, 2])
    lo = np.maximum(np.ceil(low - _BOX_PAD), 0).astype(np.int32)  # (K, 2) x, y
    hi = np.minimum(np.floor(high + _BOX_PAD), np.array([cols - 1, rows - 1])).astype(np.int32)
    size = hi - lo + 1
    e = t[:, 1:] - t[:, :1]  # (K, 2, 2) edge vectors t1 - t0, t2 - t0
    det = e[:, 0, 0] * e[:, 1, 1] - e[:, 0, 1] * e[:, 1, 0]
    if facing is None:
        # A triangle whose orientation flipped between the meshes has folded over: the surface
        # turned away (a head turned further than in the source photo). Drawing it would smear
        # texture over the visible side, so it is culled, like a back face in a renderer.
        facing = det * signed_areas(cull_src, triangles) > 0
    keep = np.flatnonzero(facing & (np.abs(det) > 1e-6) & (size > 0).all(axis=1))
    maps = []
    for _ in sources:
        maps.append(
            (np.full(rows * cols, OUTSIDE, dtype=np.float32), np.full(rows * cols, OUTSIDE, dtype=np.float32))
        )
    if keep.size == 0:
        return [(mx.reshape(rows, cols), my.reshape(rows, cols)) for mx, my in maps]
    t, lo, size, e, det = (np.take(a, keep, axis=0) for a in (t, lo, size, e, det))

    # Barycentric (l1, l2) = B @ (p - t0) with B = inverse of [e1 e2]; written as affine rows in p.
    inv = 1.0 / det
    b = np.stack([e[:, 1, 1] * inv, -e[:, 1, 0] * inv, -e[:, 0, 1] * inv, e[:, 0, 0] * inv], axis=1)
    bary = np.empty((len(keep), 6), np.float32)
    bary[:, 0:2], bary[:, 3:5] = b[:, 0:2], b[:, 2:4]
    bary[:, 2] = -(b[:, 0] * t[:, 0, 0] + b[:, 1] * t[:, 0, 1])
    bary[:, 5] = -(b[:, 2] * t[:, 0, 0] + b[:, 3] * t[:, 0, 1])

    # All bounding-box pixels of all triangles, flat: triangle id, then column/row inside its box.
    counts = size[:, 0] * size[:, 1]
    tid = np.repeat(np.arange(len(keep), dtype=np.int32), counts)
    starts = np.cumsum(counts) - counts
    local = np.arange(int(counts.sum()), dtype=np.int32) - np.repeat(starts.astype(np.int32), counts)
    # Per-triangle values per candidate: repeated in order (cheaper than gathering by ``tid``).
    width = np.repeat(size[:, 0], counts)
    row = local // width
    px = (np.repeat(lo[:, 0], counts) + local - row * width).astype(np.float32)
    py = (np.repeat(lo[:, 1], counts) + row).astype(np.float32)
    c = np.repeat(bary, counts, axis=0)
    l1 = c[:, 0] * px + c[:, 1] * py + c[:, 2]
    l2 = c[:, 3] * px + c[:, 4] * py + c[:, 5]
    inside = np.flatnonzero((l1 >= -_EPS) & (l2 >= -_EPS) & (l1 + l2 <= 1.0 + _EPS))
    l1, l2 = l1[inside], l2[inside]
    tin = tid[inside]
    flat = py[inside].astype(np.int32) * cols + px[inside].astype(np.int32)
    # Source point = s0 + l1 (s1 - s0) + l2 (s2 - s0). Sources read through the same triangles
    # (usually all) are stacked side by side, so their vertices and per-pixel coefficients are
    # gathered once: numpy's per-call cost, not arithmetic, dominates at these sizes.
    groups: dict[int, tuple[np.ndarray, list[int]]] = {}
    for i, (_, src_tris) in enumerate(sources):
        tris = triangles if src_tris is None else src_tris
        groups.setdefault(id(tris), (tris, []))[1].append(i)
    for tris, members in groups.values():
        n = len(members)
        stacked = np.concatenate([sources[i][0] for i in members], axis=1)  # (N, 2n)
        v = np.take(stacked, np.take(tris, keep, axis=0), axis=0).astype(np.float32)  # (K, 3, 2n)
        coefficients = np.concatenate([v[:, 0], v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]], axis=1)
        gathered = np.take(coefficients, tin, axis=0)  # (P, 6n): s0 | s1 - s0 | s2 - s0
        for j, i in enumerate(members):
            map_x, map_y = maps[i]
            x, y = 2 * j, 2 * j + 1
            map_x[flat] = gathered[:, x] + l1 * gathered[:, 2 * n + x] + l2 * gathered[:, 4 * n + x]
            map_y[flat] = gathered[:, y] + l1 * gathered[:, 2 * n + y] + l2 * gathered[:, 4 * n + y]
    return [(mx.reshape(rows, cols), my.reshape(rows, cols)) for mx, my in maps]


def warp_texture(
    texture: np.ndarray,
    texture_mesh: np.ndarray,
    target_mesh: np.ndarray,
    triangles: np.ndarray,
    grid: Grid,
    texture_triangles: np.ndarray | None = None,
) -> np.ndarray:
    """The texture warped onto ``target_mesh`` over ``grid``'s box: (H, W, 3) uint8."""
    map_x, map_y = triangle_maps(
        grid.to_grid(target_mesh), texture_mesh, triangles, grid.shape, texture_triangles
    )
    return remap_coarse(texture, map_x, map_y, grid)


def remap_coarse(image: np.ndarray, map_x: np.ndarray, map_y: np.ndarray, grid: Grid) -> np.ndarray:
    """``image`` resampled over ``grid``'s full-resolution box through coarse maps."""
    return cv2.remap(
        image, grid.upsample(map_x), grid.upsample(map_y), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def coverage(map_x: np.ndarray) -> np.ndarray:
    """1 where a triangle covers the coarse grid point, 0 where none does (culled or outside)."""
    return (map_x > OUTSIDE / 2).astype(np.float32)
