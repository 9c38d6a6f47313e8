"""A face's 2-D motion since a keyframe, measured cheaply: pyramidal Lucas-Kanade optical flow on
a few dozen points of its mesh, fitted with one similarity transform (cv2.estimateAffinePartial2D).

The keyframe's grey face patch is kept; each later frame is compared with it directly (not with the
frame before), so errors do not add up from frame to frame. The patch is scaled so that the face
is about ``FLOW_FACE_PX`` wide whatever the resolution: the cost does not grow with the frame.
An estimate that is unsure (too few points agree) or says the face moved a lot returns None: the
caller then renders a keyframe, which is always right.

The same flow follows points of the lips, eyes and brows. What they moved beyond the face's
rigid motion is the expression's change since the keyframe (``Motion.change``): while it stays
small the keyframe's rendering still shows the face as it is, so the caller can keep reusing it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from swaprtc.embedded import mesh as m

FLOW_FACE_PX = 112.0  # face width in the flow patch (downscaled from larger faces, never up)
MARGIN = 0.35  # patch margin around the face box, in face sizes: room for the face to move into
MIN_POINTS = 12  # fewer points agreeing on one motion means the estimate is unsure
MIN_INLIERS = 0.6  # share of the tracked points that must agree with the fitted motion
# Largest motion since the keyframe that is still shown by moving its rendered face: beyond it
# the pose, the expression and the light change too much for a moved picture to stand in.
MAX_SCALE = 0.04  # relative size change
MAX_TURN_DEG = 4.0  # in-plane rotation
MAX_SHIFT = 0.15  # translation, in face sizes


def _flow_points() -> np.ndarray:
    """Mesh points on rigid, textured parts of the face: not the outline (background shows in
    their flow window), not the eye openings or lips (they move with blinks and speech)."""
    moving = np.concatenate([m.FACE_OVAL, m.LEFT_EYE, m.RIGHT_EYE, m.INNER_LIPS, m.OUTER_LIPS])
    rigid = np.setdiff1d(np.arange(m.NUM_POINTS), moving)
    return rigid[:: max(1, len(rigid) // 48)]


FLOW_POINTS = _flow_points()
# Where an expression shows: the lips' outline (speech), the eyelids (blinks), the brows.
EXPRESSION_POINTS = np.concatenate(
    [m.OUTER_LIPS, m.LEFT_EYE[::2], m.RIGHT_EYE[::2], m.LEFT_BROW[::2], m.RIGHT_BROW[::2]]
)
MIN_EXPRESSION_POINTS = 8  # fewer followed: the change is unknown, taken as large
LK_WINDOW = (11, 11)  # flow window, patch pixels
LK_LEVELS = 2  # pyramid levels above the patch: up to ~4 * 11 px of motion in the patch
LK_STOP = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 10, 0.03)


@dataclass(frozen=True, eq=False)
class MotionAnchor:
    """What a keyframe keeps to measure a face's motion from."""

    origin: tuple[int, int, int, int]  # x0, y0, x1, y1 of the patch in frame pixels
    scale: float  # patch pixels per frame pixel
    patch: np.ndarray  # grey uint8
    points: np.ndarray  # (K, 1, 2) float32, patch pixels: the rigid points, then the expression's
    rigid: int  # how many of ``points`` are rigid (FLOW_POINTS); the rest are EXPRESSION_POINTS
    face_px: float  # face size in frame pixels


@dataclass(frozen=True, eq=False)
class Motion:
    """A face's motion since its keyframe."""

    transform: np.ndarray  # (2, 3) similarity, frame pixels
    # How far the expression moved beyond ``transform``, in face sizes: the 90th percentile of
    # the expression points' distances from where the rigid motion alone puts them (inf: unknown).
    change: float


def _patch(frame: np.ndarray, origin: tuple[int, int, int, int], scale: float) -> np.ndarray:
    x0, y0, x1, y1 = origin
    region = frame[y0:y1, x0:x1]
    if scale >= 1.0:
        return cv2.cvtColor(region, cv2.COLOR_BGR2GRAY)
    # Bilinear, not area: 5x cheaper here, and the flow's own pyramid smooths what it aliases.
    size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
    if scale < 0.5:
        # A large face (720p and up): the colour region downscaled first, so that the grey
        # conversion runs on the small patch, not on the whole region (0.51 -> 0.18 ms at 720p).
        return cv2.cvtColor(cv2.resize(region, size, interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2GRAY)
    return cv2.resize(cv2.cvtColor(region, cv2.COLOR_BGR2GRAY), size, interpolation=cv2.INTER_LINEAR)


def anchor(frame: np.ndarray, mesh: np.ndarray) -> MotionAnchor | None:
    """The keyframe's anchor for one face mesh; None when the face is (nearly) off the frame."""
    h, w = frame.shape[:2]
    lo, hi = mesh[m.FACE_OVAL].min(axis=0), mesh[m.FACE_OVAL].max(axis=0)
    face_px = float(max(hi - lo))
    pad = MARGIN * face_px
    x0, y0 = (max(0, int(v)) for v in np.floor(lo - pad))
    x1, y1 = int(min(w, np.ceil(hi[0] + pad))), int(min(h, np.ceil(hi[1] + pad)))
    if x1 - x0 < 16 or y1 - y0 < 16 or face_px < 16:
        return None
    scale = min(1.0, FLOW_FACE_PX / face_px)
    size = np.array([(x1 - x0) * scale, (y1 - y0) * scale], np.float32)

    def inside(indices: np.ndarray) -> np.ndarray:
        points = (mesh[indices] - np.array([x0, y0], np.float32)) * np.float32(scale)
        return points[(points >= 0).all(axis=1) & (points < size - 1).all(axis=1)]

    rigid, expression = inside(FLOW_POINTS), inside(EXPRESSION_POINTS)
    if len(rigid) < MIN_POINTS:
        return None
    origin = (x0, y0, x1, y1)
    return MotionAnchor(
        origin,
        scale,
        _patch(frame, origin, scale),
        # One flow call for both sets: its pyramids are built once.
        np.ascontiguousarray(np.concatenate([rigid, expression]).reshape(-1, 1, 2), np.float32),
        len(rigid),
        face_px,
    )


def estimate(start: MotionAnchor, frame: np.ndarray) -> Motion | None:
    """The similarity moving the anchor's face to where it is in ``frame`` and how much its
    expression changed, or None when the motion cannot be measured reliably or the face moved too
    much to reuse a rendering."""
    current = _patch(frame, start.origin, start.scale)
    if current.shape != start.patch.shape:
        return None
    moved, status, _ = cv2.calcOpticalFlowPyrLK(  # type: ignore[call-overload]  # nextPts None: OpenCV allows it
        start.patch, current, start.points, None, winSize=LK_WINDOW, maxLevel=LK_LEVELS, criteria=LK_STOP
    )
    found = status.ravel() == 1
    ok = found[: start.rigid]
    if int(ok.sum()) < MIN_POINTS:
        return None
    src, dst = start.points[: start.rigid][ok], moved[: start.rigid][ok]
    fit, inliers = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=1.0)
    if fit is None or inliers is None or int(inliers.sum()) < max(MIN_POINTS, MIN_INLIERS * start.rigid):
        return None
    scale = float(np.hypot(fit[0, 0], fit[1, 0]))
    turn = float(np.degrees(np.arctan2(fit[1, 0], fit[0, 0])))
    # The same similarity in frame pixels: patch = (frame - origin) * s, so only the shift changes.
    x0, y0 = start.origin[:2]
    linear = fit[:, :2]
    origin = np.array([x0, y0], np.float64)
    shift = origin - linear @ origin + fit[:, 2] / start.scale
    motion = np.column_stack([linear, shift])
    centre = start.points.reshape(-1, 2).mean(axis=0) / start.scale + origin
    travel = float(np.linalg.norm(motion[:, :2] @ centre + motion[:, 2] - centre))
    if abs(scale - 1.0) > MAX_SCALE or abs(turn) > MAX_TURN_DEG or travel > MAX_SHIFT * start.face_px:
        return None
    return Motion(motion, _change(start, fit, moved, found))


def _change(start: MotionAnchor, fit: np.ndarray, moved: np.ndarray, found: np.ndarray) -> float:
    """How far the expression points moved beyond the rigid ``fit`` (patch pixels), in face sizes."""
    ok = found[start.rigid :]
    if int(ok.sum()) < MIN_EXPRESSION_POINTS:
        return float("inf")
    before = start.points[start.rigid :][ok].reshape(-1, 2).astype(np.float64)
    after = moved[start.rigid :][ok].reshape(-1, 2)
    residual = np.linalg.norm(after - (before @ fit[:, :2].T + fit[:, 2]), axis=1)
    # The 90th percentile as the nearest rank: np.percentile costs ~0.1 ms of Python per call here.
    rank = round(0.9 * (len(residual) - 1))
    return float(np.partition(residual, rank)[rank]) / (start.face_px * start.scale)


def move_points(points: np.ndarray, motion: np.ndarray) -> np.ndarray:
    """``points`` (N, 2) moved by a (2, 3) transform, float32."""
    return (points.astype(np.float64) @ motion[:, :2].T + motion[:, 2]).astype(np.float32)
