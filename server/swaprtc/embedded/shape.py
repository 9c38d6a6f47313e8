"""Moving the target's inner landmarks towards the source face's proportions; pure functions.

Both 3-D meshes are brought into one pose by a similarity fitted on the face outline and the nose
bridge (rigid parts), so a turned head compares like with like. Every inner point that does not
open or close (brows, nose, cheeks, eye and mouth corners) moves by its difference; eyelids and
lips move with their neighbours, so the target's expression stays. With ``contour`` the outer
contour moves too (the caller then warps the picture around the face, so no seam shows);
without it the face keeps the target's outline.
"""

from __future__ import annotations

import numpy as np

from swaprtc.embedded import mesh as m

RIGID = np.concatenate([m.FACE_OVAL, np.array([168, 6, 197, 195])])
# Points that open and close (eyelids, lips) carry expression, not proportions: they follow the
# anchors around them instead. Eye and mouth corners stay anchors (width and spacing).
_MOVING = set(m.LEFT_EYE) | set(m.RIGHT_EYE) | set(m.INNER_LIPS) | set(m.OUTER_LIPS)
FOLLOWERS = np.array(sorted(_MOVING - {33, 133, 362, 263, m.MOUTH_LEFT, m.MOUTH_RIGHT}))
ANCHORS = np.array(sorted(set(range(m.NUM_POINTS)) - set(FOLLOWERS) - set(m.FACE_OVAL)))
SPREAD = 0.08  # follower influence radius, in face widths


def similarity_3d(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Umeyama: scale s, rotation R, translation t minimising |s R src + t - dst|² over points."""
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    a, b = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(b.T @ a / len(src))
    d = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0
    rot = u @ np.diag(d) @ vt
    var = float((a**2).sum() / len(src))
    scale = float((sig * d).sum() / max(var, 1e-12))
    return scale, rot, mu_d - scale * rot @ mu_s


def follower_weights(xyz: np.ndarray) -> np.ndarray:
    """(followers, anchors) row-normalised Gaussian weights: how each eyelid/lip point follows
    the anchors around it. Computed once per source face (its geometry is close enough)."""
    pts = xyz[: m.NUM_POINTS, :2].astype(np.float64)
    width = float(np.ptp(pts[m.FACE_OVAL, 0])) or 1.0
    d2 = ((pts[FOLLOWERS, None] - pts[None, ANCHORS]) ** 2).sum(-1)
    w = np.exp(-d2 / (2 * (SPREAD * width) ** 2))
    return (w / np.maximum(w.sum(axis=1, keepdims=True), 1e-12)).astype(np.float32)


def shape_offsets(
    target_xyz: np.ndarray, source_xyz: np.ndarray, amount: float, weights: np.ndarray, contour: bool = False
) -> np.ndarray:
    """(468, 2) image-plane offsets moving the target's inner landmarks ``amount`` (0..1) of the
    way to the source's proportions; the face outline too with ``contour`` (the caller then warps
    the picture around it), else zero there. ``weights``: follower_weights()."""
    out = np.zeros((m.NUM_POINTS, 2), np.float32)
    if amount <= 0:
        return out
    t = target_xyz.astype(np.float64)
    s, rot, tr = similarity_3d(source_xyz[RIGID].astype(np.float64), t[RIGID])
    aligned = (s * (rot @ source_xyz[ANCHORS].astype(np.float64).T)).T + tr
    out[ANCHORS] = (aligned - t[ANCHORS])[:, :2] * amount
    out[FOLLOWERS] = weights @ out[ANCHORS]
    if contour:
        outline = (s * (rot @ source_xyz[m.FACE_OVAL].astype(np.float64).T)).T + tr
        out[m.FACE_OVAL] = (outline - t[m.FACE_OVAL])[:, :2] * amount
    return out
