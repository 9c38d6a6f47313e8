"""Masks and the final composite for the embedded swap; pure functions of arrays.

Everything that only needs low frequencies (masks, colour) is computed on the coarse grid and
upsampled, so the full-resolution work per frame is one multiply-add and one blend over the box.

The whole inner face comes from the source. The target's own eye interior is kept only while an
eye is closing or far more open than the source's, and its mouth interior only while the mouth is
open wider than the source's (or always, with the mouth mask): each by a weight from 0 to 1 that
follows the openness, so nothing is a fixed hole.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from swaprtc.embedded import mesh as m

SHIFT = 4  # fixed-point bits for sub-pixel polygon filling
_ONE = 1 << SHIFT
# Eye keep weight: ramps up as the target's lid gap falls below CLOSING × the source's, or rises
# above OPENING × the source's.
CLOSING = (0.55, 0.3)  # ratio where keeping starts, where it is complete
OPENING = (1.6, 2.1)
OVAL_SHRINK = 0.25  # the blend edge sits this many feathers inside the face oval
# Share of the forehead (above the eyes) swapped: all of it, since the target's own fringe, hat or
# hairline is kept where it covers the forehead (swap.py) and the photo's too (source.py).
FOREHEAD_KEEP = 1.0
# How much wider the target's lip gap (/ mouth width) is than the source's where keeping its mouth
# interior starts and is complete: the source's own teeth are shown while they fit.
MOUTH_OPEN = (0.03, 0.08)
MOUTH_PAD = 0.0  # the kept mouth interior reaches this many feathers past the inner lip line
LEFT_BROW, RIGHT_BROW = m.LEFT_BROW, m.RIGHT_BROW  # not used for skin colour statistics


def fixed_point(points: np.ndarray) -> np.ndarray:
    return np.round(points * _ONE).astype(np.int32)


def scaled_polygon(points: np.ndarray, factor: float, pad: float) -> np.ndarray:
    """Grow a polygon about its centroid by ``factor`` plus ``pad`` pixels outward."""
    centre = points.mean(axis=0)
    offset = points - centre
    # np.linalg.norm's own steps for a row norm, without its checks (this runs ~9 times a frame).
    norm = np.sqrt(np.add.reduce(offset * offset, axis=1, keepdims=True)) + 1e-6
    return centre + offset * factor + offset / norm * pad


def _ramp(x: float, start: float, full: float) -> float:
    return float(np.clip((x - start) / (full - start), 0.0, 1.0))


@dataclass(frozen=True)
class Keep:
    """How much of the target's own eye and mouth interiors to keep (0..1 each)."""

    left_eye: float = 0.0
    right_eye: float = 0.0
    mouth: float = 0.0
    mouth_mask: bool = False  # keep the whole mouth (lips and interior), not only an open interior
    mouth_padding: float = 0.0  # mouth mask only: grow the kept region (fraction of mouth width)


def keep_weights(
    target_mesh: np.ndarray,
    source_eyes: tuple[float, float],
    source_mouth: float = 0.0,
    mouth_mask: bool = False,
    mouth_padding: float = 0.0,
) -> Keep:
    """Keep weights from the target's eye and mouth openness against the source's."""
    eyes = []
    for t, s in zip(m.eye_openness(target_mesh), source_eyes, strict=True):
        ratio = t / max(s, 0.02)
        eyes.append(max(1.0 - _ramp(ratio, CLOSING[1], CLOSING[0]), _ramp(ratio, *OPENING)))
    mouth = 1.0 if mouth_mask else _ramp(m.mouth_openness(target_mesh) - source_mouth, *MOUTH_OPEN)
    return Keep(eyes[0], eyes[1], mouth, mouth_mask, mouth_padding if mouth_mask else 0.0)


@dataclass(frozen=True, eq=False)
class Masks:
    alpha: np.ndarray  # how much of the source to show
    skin: np.ndarray  # where to measure skin colour (no eyes, brows, lips)
    boundary: np.ndarray  # the band just inside the blend edge (seam correction)


def face_masks(
    grid_mesh: np.ndarray, shape: tuple[int, int], feather: float, keep: Keep, mouth_blur: float = 0.3
) -> Masks:
    """Masks on the coarse grid (float32 in [0, 1]); ``feather`` is the edge softness in cells."""
    rows, cols = shape
    oval = np.zeros((rows, cols), np.uint8)
    # Shrink the oval so the feathered edge lies inside the face and never reaches the box edge.
    cv2.fillPoly(
        oval,
        [fixed_point(scaled_polygon(m.blend_outline(grid_mesh, FOREHEAD_KEEP), 1.0, -OVAL_SHRINK * feather))],
        255,
        lineType=cv2.LINE_AA,
        shift=SHIFT,
    )
    sigma = max(feather / 2.0, 0.5)
    soft_oval = cv2.GaussianBlur(oval, (0, 0), sigma).astype(np.float32) * np.float32(1 / 255)
    keep_map = np.zeros((rows, cols), np.float32)
    mouth_width = float(np.linalg.norm(grid_mesh[m.MOUTH_LEFT] - grid_mesh[m.MOUTH_RIGHT]))
    regions = (
        (m.LEFT_EYE, keep.left_eye, 1.0, 0.3 * feather, 0.25 * feather),
        (m.RIGHT_EYE, keep.right_eye, 1.0, 0.3 * feather, 0.25 * feather),
        (
            # The mouth mask keeps the lips too (the inner ring has no area while lips touch).
            m.OUTER_LIPS if keep.mouth_mask else m.INNER_LIPS,
            keep.mouth,
            1.0,
            MOUTH_PAD * feather + keep.mouth_padding * mouth_width,
            max(0.25 * feather, mouth_blur * 0.25 * mouth_width),
        ),
    )
    for ring, weight, factor, pad, blur in regions:
        if weight <= 0:
            continue
        hole = np.zeros((rows, cols), np.uint8)
        cv2.fillPoly(
            hole,
            [fixed_point(scaled_polygon(grid_mesh[ring], factor, pad))],
            255,
            lineType=cv2.LINE_AA,
            shift=SHIFT,
        )
        # Doubled and clipped: the whole interior is kept, the feather lies on its edge only.
        soft = np.minimum(cv2.GaussianBlur(hole, (0, 0), max(blur, 0.5)).astype(np.float32) * (2 / 255), 1.0)
        soft *= np.float32(weight)
        np.maximum(keep_map, soft, out=keep_map)
    alpha = soft_oval * (1.0 - keep_map)
    features = np.zeros((rows, cols), np.uint8)
    for ring, grow in (
        (m.LEFT_EYE, 1.5),
        (m.RIGHT_EYE, 1.5),
        (LEFT_BROW, 1.3),
        (RIGHT_BROW, 1.3),
        (m.OUTER_LIPS, 1.2),
    ):
        cv2.fillPoly(features, [fixed_point(scaled_polygon(grid_mesh[ring], grow, 0.5))], 255, shift=SHIFT)
    skin = ((oval > 127) & (features < 128)).astype(np.float32)
    boundary = ((soft_oval > 0.3) & (soft_oval < 0.9)).astype(np.float32)
    return Masks(alpha, skin, boundary)


def capped(face: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """``face`` (h, w, 3) float32 clamped in place to ``cap`` (3,) per channel: one cv2.min with a
    scalar, ten times faster than numpy's broadcast over a last axis of 3 (and the same floats)."""
    # A scalar as a tuple: OpenCV's stubs do not allow it, OpenCV does.
    cv2.min(face, (float(cap[0]), float(cap[1]), float(cap[2]), 0.0), dst=face)  # type: ignore[call-overload]
    return face


def composite(
    target_box: np.ndarray,
    warped_box: np.ndarray,
    gain: np.ndarray,
    offset: np.ndarray,
    cap: np.ndarray,
    alpha: np.ndarray,
) -> np.ndarray:
    """target·(1-α) + min(warped·gain + offset, cap)·α over the face box, uint8 out."""
    # In place, the same float32 steps as target + (min(warped * gain + offset, cap) - target) * a.
    face = warped_box.astype(np.float32)
    face *= gain
    face += offset
    capped(face, cap)
    out = target_box.astype(np.float32)
    face -= out
    face *= alpha[..., None]
    out += face
    out += np.float32(0.5)
    return np.clip(out, 0, 255, out=out).astype(np.uint8)
