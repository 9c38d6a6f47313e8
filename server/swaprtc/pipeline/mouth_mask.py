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
    by ``m``: frame -> crop) is 1, in place; only the crop's region of the frame is touched."""
    region = crop_region(m, mask.shape[0], out.shape)
    if region is None:
        return
    x0, y0, x1, y1 = region
    back = invert(m)
    back[:, 2] -= (x0, y0)
    alpha = cv2.warpAffine(mask, back, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderValue=0)
    roi = out[y0:y1, x0:x1]
    roi[...] = cv2.blendLinear(frame[y0:y1, x0:x1], roi, alpha, 1.0 - alpha)
