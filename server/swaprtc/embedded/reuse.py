"""A keyframe's rendered face moved onto a later frame: one warpAffine of the coloured face and one
of its alpha by the face's motion (motion.py), blended over that frame's own pixels.

The coloured face is kept in float32 as the keyframe's blend makes it (unclipped: where it is
brighter than white, the keyframe blends that in, and a reused frame must look the same) and
blended with cv2.blendLinear, several times cheaper than the same blend in numpy.

A face rendered below the frame's resolution (``to_frame``, see scaled.py) goes through the same
warps, by its motion composed with the scale up: its keyframe too.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from swaprtc.embedded.blend import capped
from swaprtc.embedded.swap import FaceLayer


@dataclass(frozen=True, eq=False)
class ReusableFace:
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 of the keyframe's face box
    face: np.ndarray  # (h, w, 3) float32, the colour-matched face over the whole box
    alpha: np.ndarray  # (h, w) float32
    # (h, w, 2) float32: where the target's own picture under the face was taken from, relative to
    # each pixel, in frame pixels (the change of shape moves it); None where it was not moved.
    shift: np.ndarray | None = None
    # (2, 3): the box's (rendered) pixels to frame pixels, for a face rendered below the frame's
    # resolution; None: rendered in frame pixels.
    to_frame: np.ndarray | None = None
    # With ``to_frame``: the shift's x and y as two (h, w) arrays, for one-channel warps.
    shift_planes: tuple[np.ndarray, np.ndarray] | None = None


def reusable(layer: FaceLayer, to_frame: np.ndarray | None = None) -> ReusableFace:
    """The keyframe's layer as it will be moved: the colour match applied once, here.
    ``to_frame``: the layer's pixels to frame pixels, when it was rendered smaller."""
    face = layer.warped.astype(np.float32)
    face *= layer.gain
    face += layer.offset
    capped(face, layer.cap)
    shift = None
    if layer.reshape is not None:
        x0, y0, x1, y1 = layer.box
        shift = np.empty((y1 - y0, x1 - x0, 2), np.float32)
        np.subtract(layer.reshape[0], np.arange(x1 - x0, dtype=np.float32), out=shift[..., 0])
        np.subtract(layer.reshape[1], np.arange(y1 - y0, dtype=np.float32)[:, None], out=shift[..., 1])
        if to_frame is not None:  # rendered pixels to frame pixels
            shift[..., 0] *= np.float32(to_frame[0, 0])
            shift[..., 1] *= np.float32(to_frame[1, 1])
    planes = None
    if shift is not None and to_frame is not None:
        planes = (np.ascontiguousarray(shift[..., 0]), np.ascontiguousarray(shift[..., 1]))
    return ReusableFace(layer.box, face, layer.alpha, shift, to_frame, planes)


def moved_box(
    box: tuple[int, int, int, int], motion: np.ndarray, frame_shape: tuple[int, ...]
) -> tuple[int, ...]:
    """The integer frame box holding ``box`` moved by ``motion``, clipped to the frame."""
    x0, y0, x1, y1 = box
    corners = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]], np.float64) @ motion[:, :2].T + motion[:, 2]
    lo, hi = np.floor(corners.min(axis=0)), np.ceil(corners.max(axis=0))
    h, w = frame_shape[:2]
    return max(0, int(lo[0])), max(0, int(lo[1])), min(w, int(hi[0])), min(h, int(hi[1]))


def frame_coords(shape: tuple[int, ...]) -> np.ndarray:
    """(h, w, 2) float32: each pixel's own x and y. Depends on the frame size only, so a stream
    makes it once: a box's relative map becomes absolute by one cv2.add of a slice of it."""
    h, w = shape[:2]
    coords = np.empty((h, w, 2), np.float32)
    coords[..., 0] = np.arange(w, dtype=np.float32)
    coords[..., 1] = np.arange(h, dtype=np.float32)[:, None]
    return coords


def _compose(motion: np.ndarray, to_frame: np.ndarray) -> np.ndarray:
    """``motion`` after ``to_frame``, both (2, 3)."""
    return np.column_stack([motion[:, :2] @ to_frame[:, :2], motion[:, :2] @ to_frame[:, 2] + motion[:, 2]])


def composite_moved(
    out: np.ndarray, frame: np.ndarray, face: ReusableFace, motion: np.ndarray | None, coords: np.ndarray
) -> bool:
    """Blend ``face`` moved by ``motion`` (2, 3, frame pixels; None: where it was rendered) over
    ``frame`` into ``out``; only the moved box is written. False when it lands off the frame.
    ``coords``: frame_coords() of the frame."""
    if face.to_frame is not None:
        motion = face.to_frame if motion is None else _compose(motion, face.to_frame)
    x0, y0, x1, y1 = face.box if motion is None else moved_box(face.box, motion, frame.shape)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return False
    size = (x1 - x0, y1 - y0)
    shift = face.shift
    under = frame[y0:y1, x0:x1]
    if motion is None:  # the keyframe itself
        moved, alpha = face.face, face.alpha
    else:
        # In box pixels: destination = motion(source box origin + p) - destination origin.
        local = motion.astype(np.float64).copy()
        local[:, 2] += motion[:, :2] @ np.array(face.box[:2], np.float64) - np.array([x0, y0], np.float64)
        moved = cv2.warpAffine(
            face.face, local, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        alpha = cv2.warpAffine(
            face.alpha, local, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
        )
        if face.shift_planes is not None:
            # A face rendered smaller has no full-resolution keyframe to match byte for byte: the
            # cheaper way (one-channel warps, a fixed-point map; 1.5x faster at 720p).
            shift_x, shift_y = (
                cv2.warpAffine(p, local, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
                for p in face.shift_planes
            )
            under = _remapped_fixed(frame, shift_x, shift_y, (x0, y0, x1, y1))
            shift = None
        elif shift is not None:
            shift = cv2.warpAffine(shift, local, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    if shift is not None:
        # The keyframe's change of shape, moved along, applied to this frame's own picture, read
        # within the box as the keyframe does (it remaps the box alone, edges replicated).
        # (The keyframe's own shift is kept for the frames after it: written to a new array.)
        at = cv2.add(shift, coords[y0:y1, x0:x1], dst=None if motion is None else shift)
        # Clipped per channel by two cv2 calls with scalars (numpy's clip is several times slower).
        # Scalars as tuples and one two-channel map (map2 None): OpenCV's stubs do not allow them.
        cv2.max(at, (x0, y0, 0, 0), dst=at)  # type: ignore[call-overload]
        cv2.min(at, (x1 - 1, y1 - 1, 0, 0), dst=at)  # type: ignore[call-overload]
        under = cv2.remap(frame, at, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)  # type: ignore[call-overload]
    blended = cv2.blendLinear(under.astype(np.float32), moved, 1.0 - alpha, alpha)
    # Rounded and saturated like the keyframe's blend, negatives to 0: a float to 8-bit add of 0
    # does both in one pass (the stubs do not allow the scalar).
    out[y0:y1, x0:x1] = cv2.add(blended, 0.0, dtype=cv2.CV_8U)  # type: ignore[call-overload]
    return True


def _remapped_fixed(
    frame: np.ndarray, shift_x: np.ndarray, shift_y: np.ndarray, box: tuple[int, ...]
) -> np.ndarray:
    """The frame's picture over ``box`` read at each pixel plus its shift (made absolute and
    clipped to the box here, in place), through a fixed-point map (1/32 px, as OpenCV's own)."""
    x0, y0, x1, y1 = box
    shift_x += np.arange(x0, x1, dtype=np.float32)
    shift_y += np.arange(y0, y1, dtype=np.float32)[:, None]
    for plane, lo, hi in ((shift_x, x0, x1 - 1), (shift_y, y0, y1 - 1)):
        cv2.max(plane, (lo, 0, 0, 0), dst=plane)  # type: ignore[call-overload]
        cv2.min(plane, (hi, 0, 0, 0), dst=plane)  # type: ignore[call-overload]
    xy, fraction = cv2.convertMaps(shift_x, shift_y, cv2.CV_16SC2)
    return cv2.remap(frame, xy, fraction, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
