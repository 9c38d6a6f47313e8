"""Mouth mask: keep the target's own mouth interior (teeth, tongue, an open mouth) in a swapped face.

The mask is drawn in the aligned crop and the target's pixels are put back in frame pixels
(``restore_region``), so the kept mouth is exactly what the camera saw, not a resampled copy.

A swapper redraws the whole crop, often closing or smearing an open mouth. This keeps an ellipse
around the target's mouth, placed from the two mouth-corner keypoints in crop pixels, so it
follows the mouth at any angle. ``padding`` widens it (0 = the lips' width, 1 = about twice), and
``blur`` feathers its edge (0 = hard, 1 = soft over about half the mouth width).
Pure functions of arrays: no state, no model.
"""

from __future__ import annotations

import cv2
import numpy as np

from swaprtc.pipeline.aligner import invert
from swaprtc.pipeline.paste import crop_region

HEIGHT_RATIO = 0.45  # ellipse height / mouth width at padding 0: an open mouth's interior
DROP_RATIO = 0.12  # the interior sits a little below the line between the corners
MAX_SIGMA_RATIO = 0.25  # Gaussian sigma at blur 1, in mouth widths


def mouth_mask(corners: np.ndarray, size: int, padding: float = 0.1, blur: float = 0.3) -> np.ndarray:
    """Float32 (size, size) mask in [0, 1], 1 where the target's mouth is kept.

    ``corners``: (2, 2) left and right mouth corners in the crop's pixels.
    """
    left, right = (np.asarray(c, np.float64) for c in corners[:2])
    axis = right - left
    width = float(np.hypot(*axis))
    mask: np.ndarray = np.zeros((size, size), np.float32)
    if width < 1.0:
        return mask
    pad = float(np.clip(padding, 0.0, 1.0))
    normal = np.array([-axis[1], axis[0]]) / width  # points down the face for an upright face
    centre = (left + right) / 2 + normal * DROP_RATIO * width
    axes = (max(1, round(width / 2 * (1.0 + pad))), max(1, round(width * HEIGHT_RATIO / 2 * (1.0 + 2 * pad))))
    angle = float(np.degrees(np.arctan2(axis[1], axis[0])))
    cv2.ellipse(mask, (round(centre[0]), round(centre[1])), axes, angle, 0, 360, 1.0, -1, cv2.LINE_AA)
    sigma = float(np.clip(blur, 0.0, 1.0)) * MAX_SIGMA_RATIO * width
    if sigma >= 0.5:
        mask = cv2.GaussianBlur(mask, (0, 0), sigma)
    return mask


def restore_region(out: np.ndarray, frame: np.ndarray, mask: np.ndarray, m: np.ndarray) -> None:
    """Blend ``frame``'s pixels back into ``out`` (same shape) where the crop-space ``mask`` (aligned
    by ``m``: frame -> crop) is above 0, in place; only the mask's own region is warped and touched."""
    ys, xs = np.nonzero(mask > 1e-3)
    if ys.size == 0:
        return
    # The mask's bounding square, treated as a crop of its own: same mapping, shifted origin.
    x0, y0 = int(xs.min()), int(ys.min())
    side = max(int(xs.max()) - x0, int(ys.max()) - y0) + 1
    sub = np.zeros((side, side), np.float32)
    part = mask[y0 : y0 + side, x0 : x0 + side]
    sub[: part.shape[0], : part.shape[1]] = part
    m_sub = np.asarray(m, np.float64).copy()
    m_sub[:, 2] -= (x0, y0)
    region = crop_region(m_sub, side, out.shape)
    if region is None:
        return
    rx0, ry0, rx1, ry1 = region
    back = invert(m_sub)
    back[:, 2] -= (rx0, ry0)
    alpha = cv2.warpAffine(sub, back, (rx1 - rx0, ry1 - ry0), flags=cv2.INTER_LINEAR, borderValue=0)
    roi = out[ry0:ry1, rx0:rx1]
    roi[...] = cv2.blendLinear(frame[ry0:ry1, rx0:rx1], roi, alpha, 1.0 - alpha)
