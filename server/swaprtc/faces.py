"""Helpers both engines share: the input frame check and the source face thumbnail."""

from __future__ import annotations

import cv2
import numpy as np

from swaprtc.errors import BadImageError

THUMBNAIL_SIZE = 128
THUMBNAIL_MARGIN = 0.3  # the face box grown by this fraction of its longest side


def check_frame(image: object) -> np.ndarray:
    """``image`` itself when it is a BGR uint8 (H, W, 3) array; BadImageError otherwise."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise BadImageError("expected a BGR uint8 image of shape (H, W, 3)")
    return image


def face_thumbnail(image: np.ndarray, bbox: np.ndarray, size: int = THUMBNAIL_SIZE) -> bytes:
    """JPEG of a square around the face box (x1, y1, x2, y2) grown by 30%, longest side ``size`` px."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in bbox[:4])
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    half = max(x2 - x1, y2 - y1) * (1 + THUMBNAIL_MARGIN) / 2
    left, top = max(int(cx - half), 0), max(int(cy - half), 0)
    right, bottom = min(int(cx + half) + 1, w), min(int(cy + half) + 1, h)
    crop = image[top:bottom, left:right] if right > left and bottom > top else image
    scale = size / max(crop.shape[:2])
    thumb = cv2.resize(
        crop,
        (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))),
        interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
    )
    ok, buf = cv2.imencode(".jpg", thumb, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise BadImageError("could not encode the face thumbnail")
    return buf.tobytes()
