"""The vectorised piecewise-affine rasteriser and the fixed triangulation, on synthetic meshes."""

from __future__ import annotations

import cv2
import numpy as np
from swaprtc.embedded.mesh import triangulate
from swaprtc.embedded.warp import OUTSIDE, Grid, triangle_maps


def _grid_points(n: int = 6, spacing: float = 10.0) -> np.ndarray:
    ys, xs = np.mgrid[0:n, 0:n]
    return np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32) * spacing + 5.0


def test_triangulation_covers_every_point_without_overlap() -> None:
    rng = np.random.default_rng(3)
    pts = rng.uniform(0, 100, (60, 2)).astype(np.float32)
    tris = triangulate(pts)
    assert set(np.unique(tris)) == set(range(60))
    a = pts[tris]
    e1, e2 = a[:, 1] - a[:, 0], a[:, 2] - a[:, 0]
    area = 0.5 * np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]).sum()
    hull = cv2.contourArea(cv2.convexHull(pts))
    assert abs(area - hull) < 1e-3 * hull  # the triangles tile the convex hull exactly once


def test_affine_mesh_gives_the_exact_affine_map() -> None:
    src = _grid_points()
    tris = triangulate(src)
    affine = np.array([[0.8, 0.3, 12.0], [-0.2, 1.1, 7.0]], np.float32)
    dst = src @ affine[:, :2].T + affine[:, 2]
    map_x, map_y = triangle_maps(dst, src, tris, (90, 90))
    covered = map_x > OUTSIDE / 2
    hull = np.zeros((90, 90), np.uint8)
    cv2.fillConvexPoly(hull, np.round(cv2.convexHull(dst)).astype(np.int32), 1)
    inner = cv2.erode(hull, np.ones((3, 3), np.uint8)).astype(bool)
    assert covered[inner].all()  # no holes or cracks along shared edges
    ys, xs = np.nonzero(covered)
    inv = cv2.invertAffineTransform(affine)
    expect = np.stack([xs, ys], axis=1) @ inv[:, :2].T + inv[:, 2]
    got = np.stack([map_x[ys, xs], map_y[ys, xs]], axis=1)
    assert np.abs(got - expect).max() < 1e-3


def test_folded_triangles_are_culled() -> None:
    src = np.array([[0, 0], [20, 0], [20, 20], [0, 20]], np.float32)
    tris = np.array([[0, 1, 2], [0, 2, 3]], np.int32)
    dst = src.copy()
    dst[3] = [30, 5]  # vertex 3 swings over the diagonal: triangle (0, 2, 3) flips orientation
    map_x, _ = triangle_maps(dst, src, tris, (25, 35))
    covered = map_x > OUTSIDE / 2
    assert covered[5, 15]  # inside the upright triangle (0, 1, 2)
    assert not covered[6, 27]  # only the flipped triangle reaches here: culled


def test_grid_upsample_aligns_grid_points_with_pixels() -> None:
    grid = Grid(x0=10, y0=20, x1=110, y1=70, step=2.5)
    rows, cols = grid.shape
    assert (cols - 1) * grid.step >= 99 and (rows - 1) * grid.step >= 49
    coarse = np.tile(np.arange(cols, dtype=np.float32) * grid.step, (rows, 1))  # value = pixel x
    full = grid.upsample(coarse)
    assert full.shape == (50, 100)
    assert np.abs(full - np.arange(100, dtype=np.float32)[None, :]).max() < 0.1
    pts = np.array([[10, 20], [35, 45]], np.float32)
    assert np.allclose(grid.to_grid(pts), [[0, 0], [10, 10]])
