"""The keyframe's faster steps give exactly what the plain numpy they replaced gave (the swap's
output is pinned byte for byte: tests/test_embedded_cadence.py, tools/embedded_frame_hashes.py)."""

from __future__ import annotations

import cv2
import numpy as np
from swaprtc.embedded.blend import capped
from swaprtc.embedded.reuse import frame_coords
from swaprtc.embedded.swap import _mirror_blend
from swaprtc.embedded.warp import Grid


def test_capped_equals_numpy_minimum() -> None:
    rng = np.random.default_rng(0)
    face = rng.uniform(-20, 300, (37, 29, 3)).astype(np.float32)
    cap = np.array([231.5, 250.25, 199.0], np.float32)
    expected = np.minimum(face, cap)
    assert np.array_equal(capped(face, cap), expected)
    assert np.array_equal(face, expected)  # in place


def test_frame_coords_hold_each_pixels_position() -> None:
    coords = frame_coords((48, 64, 3))
    assert coords.shape == (48, 64, 2) and coords.dtype == np.float32
    assert coords[17, 5].tolist() == [5.0, 17.0] and coords[47, 63].tolist() == [63.0, 47.0]


def test_mirror_blend_over_its_rectangle_equals_the_whole_box() -> None:
    rng = np.random.default_rng(1)
    texture = rng.integers(0, 256, (90, 80, 3), dtype=np.uint8)
    grid = Grid(10, 20, 110, 140, 4.0)
    rows, cols = grid.shape
    maps = tuple(rng.uniform(0, 79, (rows, cols)).astype(np.float32) for _ in range(2))
    weight = np.zeros((rows, cols), np.float32)
    weight[5:12, 3:9] = rng.uniform(0, 1.2, (7, 6))  # only a part of the face is mirrored
    warped = rng.integers(0, 256, (120, 100, 3), dtype=np.uint8)
    # What the swap computed before: the mirror read over the whole box, blended everywhere.
    mirrored = cv2.remap(
        texture,
        grid.upsample(maps[0]),
        grid.upsample(maps[1]),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    w = grid.upsample(np.clip(weight, 0.0, 1.0))[..., None]
    expected = (warped + (mirrored.astype(np.float32) - warped) * w + 0.5).astype(np.uint8)
    got = _mirror_blend(texture, warped.copy(), maps, weight, grid)
    assert np.array_equal(got, expected)
    assert not np.array_equal(got, warped)  # the mirror did change the face
    untouched = warped.copy()
    assert _mirror_blend(texture, untouched, maps, np.zeros_like(weight), grid) is untouched
