"""Paste a processed, aligned face crop back into the frame.

``paste_back`` works on the face's bounding box only: it maps the crop's corners into the frame,
warps the crop and a cached feathered mask into that region with a shifted matrix, and blends
there with ``cv2.blendLinear`` (uint8 pixels, float32 per-pixel weights, result rounded back to
uint8). Pixels outside the region are never touched.

``paste_back_reference`` re-implements insightface's ``INSwapper.get(paste_back=True)`` behaviour
(three full-frame warps, full-frame erode and blur, float32 full-frame blend) so the benchmark can
compare against it. Do not use it in the live path.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from swaprtc.pipeline.aligner import invert


@lru_cache(maxsize=16)
def mask_template(size: int) -> np.ndarray:
    """Feathered float32 mask (0..1) for a ``size`` crop, read-only and cached per size.

    It mirrors the reference mask in crop units: the crop's square eroded by about a tenth of its
    size, then a Gaussian blur about a twentieth of its size, so the seam fades inside the crop.
    """
    erode = max(size // 10, 1)
    inset = erode // 2
    mask = np.zeros((size, size), dtype=np.float32)
    mask[inset : size - inset, inset : size - inset] = 1.0
    k = 2 * max(size // 20, 1) + 1
    mask = cv2.GaussianBlur(mask, (k, k), 0, borderType=cv2.BORDER_CONSTANT).astype(np.float32, copy=False)
    mask.setflags(write=False)
    return mask


def crop_region(m: np.ndarray, size: int, frame_shape: tuple[int, ...]) -> tuple[int, int, int, int] | None:
    """Frame-pixel box (x0, y0, x1, y1), end exclusive, covering the crop warped back by ``invert(m)``,
    clipped to the frame; None when it lies entirely outside."""
    im = invert(m)
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64)
    pts = corners @ im[:, :2].T + im[:, 2]
    h, w = frame_shape[:2]
    x0 = max(int(np.floor(pts[:, 0].min())) - 1, 0)
    y0 = max(int(np.floor(pts[:, 1].min())) - 1, 0)
    x1 = min(int(np.ceil(pts[:, 0].max())) + 2, w)
    y1 = min(int(np.ceil(pts[:, 1].max())) + 2, h)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def paste_into(
    frame: np.ndarray, crop: np.ndarray, m: np.ndarray, mask: np.ndarray | None = None
) -> tuple[int, int, int, int] | None:
    """Blend ``crop`` (aligned by ``m``: frame → crop) into ``frame`` in place. Returns the region touched.

    ``mask`` is a float32 crop-sized mask in [0, 1]; the cached feathered template is used when None.
    """
    size = crop.shape[0]
    region = crop_region(m, size, frame.shape)
    if region is None:
        return None
    x0, y0, x1, y1 = region
    w, h = x1 - x0, y1 - y0
    im = invert(m)
    im[:, 2] -= (x0, y0)  # same mapping, expressed relative to the region's origin
    if mask is None:
        mask = mask_template(size)
    face = cv2.warpAffine(crop, im, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(mask, im, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
    roi = frame[y0:y1, x0:x1]
    # blendLinear mixes uint8 images with per-pixel float weights in one SIMD pass (~10x faster
    # than the same blend in numpy integer arithmetic).
    roi[...] = cv2.blendLinear(face, roi, alpha, 1.0 - alpha)
    return region


def paste_back(frame: np.ndarray, crop: np.ndarray, m: np.ndarray) -> np.ndarray:
    """A copy of ``frame`` with ``crop`` pasted back (see ``paste_into``)."""
    out = frame.copy()
    paste_into(out, crop, m)
    return out


def paste_back_reference(
    frame: np.ndarray, crop: np.ndarray, aligned: np.ndarray, m: np.ndarray
) -> np.ndarray:
    """insightface-style paste-back, for comparison only: full-frame warps, morphology and float blend.

    ``crop`` is the swapped crop, ``aligned`` the unswapped crop it was made from (the reference also
    builds a difference mask from both; it pays for it even though the result ignores it).
    """
    h, w = frame.shape[:2]
    size = crop.shape[0]
    im = invert(m)
    diff = np.abs(crop.astype(np.float32) - aligned.astype(np.float32)).mean(axis=2)
    diff[:2, :] = 0
    diff[-2:, :] = 0
    diff[:, :2] = 0
    diff[:, -2:] = 0
    white = np.full((size, size), 255.0, dtype=np.float32)
    fake = cv2.warpAffine(crop, im, (w, h), borderValue=0.0)
    mask = cv2.warpAffine(white, im, (w, h), borderValue=0.0)
    diff = cv2.warpAffine(diff, im, (w, h), borderValue=0.0)
    mask[mask > 20] = 255
    diff = np.where(diff < 10, 0.0, 255.0).astype(np.float32)
    ys, xs = np.where(mask == 255)
    if ys.size == 0:
        return frame.copy()
    extent = int(np.sqrt(float(ys.max() - ys.min()) * float(xs.max() - xs.min())))
    k = max(extent // 10, 10)
    mask = cv2.erode(mask, np.ones((k, k), np.uint8), iterations=1)
    diff = cv2.dilate(diff, np.ones((2, 2), np.uint8), iterations=1)
    k = max(extent // 20, 5)
    mask = cv2.GaussianBlur(mask, (2 * k + 1, 2 * k + 1), 0)
    diff = cv2.GaussianBlur(diff, (11, 11), 0)  # computed and discarded, as in the reference
    alpha = (mask / 255.0)[:, :, None]
    merged = alpha * fake.astype(np.float32) + (1.0 - alpha) * frame.astype(np.float32)
    return merged.astype(np.uint8)
