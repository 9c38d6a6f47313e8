"""Masks, colour transfer and blending for the embedded swap; pure functions of arrays.

Everything that only needs low frequencies (masks, lighting) is computed on the coarse grid and
upsampled, so the full-resolution work per frame is one multiply-add over the face box.
"""

from __future__ import annotations

import cv2
import numpy as np

from swaprtc.embedded import mesh as m

_SHIFT = 4  # fixed-point bits for sub-pixel polygon filling
_ONE = 1 << _SHIFT


def _poly(points: np.ndarray) -> np.ndarray:
    return np.round(points * _ONE).astype(np.int32)


def _scaled(points: np.ndarray, factor: float, pad: float) -> np.ndarray:
    """Grow a polygon about its centroid by ``factor`` plus ``pad`` pixels outward."""
    centre = points.mean(axis=0)
    offset = points - centre
    norm = np.linalg.norm(offset, axis=1, keepdims=True) + 1e-6
    return centre + offset * factor + offset / norm * pad


def face_masks(
    grid_mesh: np.ndarray, shape: tuple[int, int], feather: float
) -> tuple[np.ndarray, np.ndarray]:
    """Blend and skin masks on the coarse grid (float32 in [0, 1]).

    ``grid_mesh``: the target mesh in grid coordinates; ``feather``: edge softness in grid cells.
    The blend mask is the face oval shrunk and feathered inside its edge, with the target's eyes
    and inner mouth cut out (so blinks and open mouths stay the target's own). The skin mask is
    the same region without feathering, used for colour statistics.
    """
    rows, cols = shape
    oval = np.zeros((rows, cols), np.uint8)
    # Shrink the oval so the feathered edge lies inside the face and never reaches the box edge.
    cv2.fillPoly(
        oval,
        [_poly(_scaled(m.blend_outline(grid_mesh), 1.0, -1.2 * feather))],
        255,
        lineType=cv2.LINE_AA,
        shift=_SHIFT,
    )
    holes = np.zeros((rows, cols), np.uint8)
    pad = 0.6 * feather
    for ring in (m.LEFT_EYE, m.RIGHT_EYE, m.INNER_LIPS):
        cv2.fillPoly(
            holes, [_poly(_scaled(grid_mesh[ring], 1.15, pad))], 255, lineType=cv2.LINE_AA, shift=_SHIFT
        )
    sigma = max(feather / 2.0, 0.5)
    soft_oval = cv2.GaussianBlur(oval, (0, 0), sigma).astype(np.float32) * np.float32(1 / 255)
    # Holes blur less than they were grown, so the original eye/lip polygons stay at alpha ~0.
    soft_holes = cv2.GaussianBlur(holes, (0, 0), max(pad / 2.5, 0.5)).astype(np.float32) * np.float32(1 / 255)
    blend = soft_oval * (1.0 - soft_holes)
    skin = ((oval > 127) & (holes < 128)).astype(np.float32)
    return blend, skin


def _masked_blur(image: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """Normalised convolution: a Gaussian blur of ``image`` that only averages inside ``mask``."""
    num = cv2.GaussianBlur(image * mask[..., None], (0, 0), sigma)
    den = cv2.GaussianBlur(mask, (0, 0), sigma)[..., None]
    return num / np.maximum(den, 1e-3)


def lighting_gain(
    target_grid: np.ndarray,
    source_grid: np.ndarray,
    skin: np.ndarray,
    sigma: float,
) -> np.ndarray:
    """Per-pixel, per-channel gain (coarse grid) taking the warped source's low-frequency colour
    and shading to the target's: gain = blur(target) / blur(source), both blurred over skin only.
    """
    if skin.sum() < 4:
        return np.ones(target_grid.shape, np.float32)
    t = _masked_blur(target_grid.astype(np.float32), skin, sigma)
    s = _masked_blur(source_grid.astype(np.float32), skin, sigma)
    return np.clip((t + 4.0) / (s + 4.0), 0.25, 4.0).astype(np.float32)


def composite(
    target_box: np.ndarray, warped_box: np.ndarray, gain: np.ndarray, alpha: np.ndarray
) -> np.ndarray:
    """target·(1-α) + warped·gain·α over the face box, uint8 out. ``gain``/``alpha`` full-res."""
    a = alpha[..., None]
    out = target_box.astype(np.float32) * (1.0 - a) + warped_box.astype(np.float32) * (gain * a)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
