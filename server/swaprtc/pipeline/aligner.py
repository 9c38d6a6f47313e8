"""Face alignment: similarity transforms from five keypoints to fixed templates, and crop warps.

All functions are pure. A transform ``M`` is a 2×3 float matrix mapping frame pixels to crop pixels;
``invert(M)`` maps crop pixels back to the frame.
"""

from __future__ import annotations

import cv2
import numpy as np

# ArcFace 112×112 template (x, y): eyes, nose tip, mouth corners.
ARCFACE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)

# FFHQ template in units of the crop size (GFPGAN is trained on 512×512 FFHQ alignments).
FFHQ_UNIT = np.array(
    [
        [0.37691676, 0.46864664],
        [0.62285697, 0.46912813],
        [0.50123859, 0.61331904],
        [0.39308822, 0.72541100],
        [0.61150205, 0.72490465],
    ],
    dtype=np.float64,
)


def arcface_template(size: int) -> np.ndarray:
    """ArcFace template for a ``size`` crop.

    Multiples of 112 scale the 112 template directly; other sizes (128 for InSwapper) scale it by
    size/128 and shift x by 8·size/128, which is how the insightface models were trained.
    """
    if size % 112 == 0:
        return ARCFACE_112 * (size / 112.0)
    ratio = size / 128.0
    out = ARCFACE_112 * ratio
    out[:, 0] += 8.0 * ratio
    return out


def ffhq_template(size: int = 512) -> np.ndarray:
    return FFHQ_UNIT * float(size)


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (rotation, uniform scale, translation) src → dst, 2×3.

    Closed form (Umeyama 1991), deterministic, unlike RANSAC/LMEDS estimators.
    """
    src = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    s_c, d_c = src - mu_s, dst - mu_d
    cov = d_c.T @ s_c / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0  # a reflection is not a similarity: flip the weakest axis
    rot = u @ np.diag(d) @ vt
    var_s = (s_c**2).sum() / len(src)
    scale = float((sig * d).sum() / var_s) if var_s > 0 else 1.0
    m = np.empty((2, 3), dtype=np.float64)
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def estimate_arcface(kps: np.ndarray, size: int) -> np.ndarray:
    """Frame → crop transform for an ArcFace/InSwapper crop of ``size`` pixels."""
    return umeyama(kps, arcface_template(size))


def estimate_ffhq(kps: np.ndarray, size: int = 512) -> np.ndarray:
    """Frame → crop transform for an FFHQ-aligned crop (GFPGAN)."""
    return umeyama(kps, ffhq_template(size))


def warp_crop(frame: np.ndarray, m: np.ndarray, size: int) -> np.ndarray:
    """The aligned ``size``×``size`` crop; pixels outside the frame are black."""
    return cv2.warpAffine(frame, m, (size, size), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))


def invert(m: np.ndarray) -> np.ndarray:
    """Inverse of a 2×3 affine transform (crop → frame)."""
    return cv2.invertAffineTransform(np.asarray(m, dtype=np.float64))


def transform_points(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    return pts @ np.asarray(m, dtype=np.float64)[:, :2].T + np.asarray(m, dtype=np.float64)[:, 2]
