"""A keyframe's rendered face moved onto a later frame: warpAffine of the coloured face, its alpha
and the change of shape's map by the face's motion (motion.py), blended over that frame's own
pixels.

The coloured face is kept in float32 as the keyframe's blend makes it (unclipped: where it is
brighter than white, the keyframe blends that in, and a reused frame must look the same) and
blended with cv2.blendLinear, several times cheaper than the same blend in numpy.

For the warps, the face and its alpha are packed into one four-channel image and the shift into
another: OpenCV's four-channel float warp is about twice as fast as its three-, two- or
one-channel ones per channel. A one-pixel border baked into them (the face's edge repeated, alpha
and shift 0) makes one border rule give each its own: the face's edge replicated, the rest 0.

A face rendered at a working resolution below the frame's (``to_frame``, see scaled.py) goes
through the same warps, by its motion composed with the scale up: its keyframe too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from swaprtc.embedded.blend import capped
from swaprtc.embedded.swap import FaceLayer


@dataclass(frozen=True, eq=False)
class ReusableFace:
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 of the keyframe's face box, rendered pixels
    face: np.ndarray  # (h, w, 3) float32, the colour-matched face over the whole box
    alpha: np.ndarray  # (h, w) float32
    # (h, w, 2) float32: where the target's own picture under the face was taken from, relative to
    # each pixel, in frame pixels (the change of shape moves it); None where it was not moved.
    shift: np.ndarray | None = None
    # (2, 3): rendered pixels to frame pixels, for a face rendered below the frame's resolution;
    # None: rendered in frame pixels.
    to_frame: np.ndarray | None = None
    # (h + 2, w + 2, 4) float32: face and alpha with their border (module docstring).
    packed: np.ndarray = field(init=False, repr=False)
    # (h + 2, w + 2, 4) float32: shift x, shift y, 0, 0 with a border of 0; None without a shift.
    packed_shift: np.ndarray | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        face = cv2.copyMakeBorder(self.face, 1, 1, 1, 1, cv2.BORDER_REPLICATE)
        alpha = cv2.copyMakeBorder(self.alpha, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
        object.__setattr__(self, "packed", cv2.merge([face, alpha]))
        packed_shift = None
        if self.shift is not None:
            packed_shift = np.zeros((*alpha.shape, 4), np.float32)
            packed_shift[1:-1, 1:-1, :2] = self.shift
        object.__setattr__(self, "packed_shift", packed_shift)


def reusable(layer: FaceLayer, to_frame: np.ndarray | None = None) -> ReusableFace:
    """The keyframe's layer as it will be moved: the colour match applied once, here.
    ``to_frame``: the layer's rendered pixels to frame pixels, when it was rendered smaller."""
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
    return ReusableFace(layer.box, face, layer.alpha, shift, to_frame)


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


class Scratch:
    """A stream's working arrays, kept from frame to frame: at a face box's size, fresh arrays
    cost the kernel a page fault every 4 KiB on each frame (up to ~1 ms at 720p). Not
    thread-safe: one per stream."""

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

    def get(self, name: str, rows: int, cols: int, channels: int, dtype: type = np.float32) -> np.ndarray:
        """An uninitialised (rows, cols[, channels]) view; each name always has the same channels
        and dtype."""
        held = self._arrays.get(name)
        if held is None or held.shape[0] < rows or held.shape[1] < cols:
            # A little larger than asked, so a face that grows by a few pixels reuses it.
            shape = (rows + rows // 8, cols + cols // 8) + ((channels,) if channels > 1 else ())
            held = np.empty(shape, dtype)
            self._arrays[name] = held
        return held[:rows, :cols]


def _compose(motion: np.ndarray, to_frame: np.ndarray) -> np.ndarray:
    """motion ∘ to_frame, both (2, 3)."""
    linear = motion[:, :2] @ to_frame[:, :2]
    return np.column_stack([linear, motion[:, :2] @ to_frame[:, 2] + motion[:, 2]])


def composite_moved(
    out: np.ndarray,
    frame: np.ndarray,
    face: ReusableFace,
    motion: np.ndarray | None,
    coords: np.ndarray,
    scratch: Scratch | None = None,
) -> bool:
    """Blend ``face`` moved by ``motion`` (2, 3, frame pixels; None: where it was rendered) over
    ``frame`` into ``out``; only the moved box is written. False when it lands off the frame.
    ``coords``: frame_coords() of the frame; ``scratch``: the stream's working arrays."""
    scratch = scratch or Scratch()
    if motion is None and face.to_frame is None:  # the keyframe itself, where it was rendered
        x0, y0, x1, y1 = face.box
        rows, cols = y1 - y0, x1 - x0
        moved, alpha, under = face.face, face.alpha, frame[y0:y1, x0:x1]
        if face.shift is not None:
            at = cv2.add(face.shift, 0.0, dst=scratch.get("at", rows, cols, 2))  # type: ignore[call-overload]
            under = _remapped(frame, at, coords, face.box, scratch)
        _blend(out, (x0, y0, x1, y1), under, moved, alpha, scratch)
        return True
    if face.to_frame is not None:
        motion = face.to_frame if motion is None else _compose(motion, face.to_frame)
    assert motion is not None
    x0, y0, x1, y1 = moved_box(face.box, motion, frame.shape)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return False
    rows, cols = y1 - y0, x1 - x0
    # Destination = motion(padded box origin + p) - destination origin (the border is 1 px).
    local = motion.astype(np.float64)
    origin = np.array(face.box[:2], np.float64) - 1.0
    local[:, 2] += motion[:, :2] @ origin - np.array([x0, y0], np.float64)
    both = _warp(face.packed, local, scratch.get("both", rows, cols, 4))
    moved, alpha = scratch.get("face", rows, cols, 3), scratch.get("alpha", rows, cols, 1)
    cv2.mixChannels([both], [moved, alpha], [0, 0, 1, 1, 2, 2, 3, 3])
    under = frame[y0:y1, x0:x1]
    if face.packed_shift is not None:
        shifted = _warp(face.packed_shift, local, scratch.get("shift", rows, cols, 4))
        at = scratch.get("at", rows, cols, 2)
        cv2.mixChannels([shifted], [at], [0, 0, 1, 1])
        under = _remapped(frame, at, coords, (x0, y0, x1, y1), scratch)
    _blend(out, (x0, y0, x1, y1), under, moved, alpha, scratch)
    return True


def _warp(image: np.ndarray, local: np.ndarray, dst: np.ndarray) -> np.ndarray:
    size = (dst.shape[1], dst.shape[0])
    cv2.warpAffine(image, local, size, dst=dst, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return dst


def _remapped(
    frame: np.ndarray, at: np.ndarray, coords: np.ndarray, box: tuple[int, ...], scratch: Scratch
) -> np.ndarray:
    """The frame's picture read at ``at`` (the shift, made absolute here, in place) within the
    box, as the keyframe does (it remaps the box alone, edges replicated)."""
    x0, y0, x1, y1 = box
    cv2.add(at, coords[y0:y1, x0:x1], dst=at)
    # Clipped per channel by two cv2 calls with scalars (numpy's clip is several times slower).
    # Scalars as tuples and one two-channel map (map2 None): OpenCV's stubs do not allow them.
    cv2.max(at, (x0, y0, 0, 0), dst=at)  # type: ignore[call-overload]
    cv2.min(at, (x1 - 1, y1 - 1, 0, 0), dst=at)  # type: ignore[call-overload]
    under = scratch.get("under", y1 - y0, x1 - x0, 3, np.uint8)
    cv2.remap(frame, at, None, cv2.INTER_LINEAR, dst=under, borderMode=cv2.BORDER_REPLICATE)  # type: ignore[call-overload]
    return under


def _blend(
    out: np.ndarray,
    box: tuple[int, ...],
    under: np.ndarray,
    face: np.ndarray,
    alpha: np.ndarray,
    scratch: Scratch,
) -> None:
    """under * (1 - alpha) + face * alpha into ``out``'s box."""
    x0, y0, x1, y1 = box
    rows, cols = y1 - y0, x1 - x0
    under_f = scratch.get("under_f", rows, cols, 3)
    np.copyto(under_f, under)
    rest = cv2.subtract(1.0, alpha, dst=scratch.get("rest", rows, cols, 1))  # type: ignore[call-overload]
    blended = cv2.blendLinear(under_f, face, rest, alpha, dst=scratch.get("blended", rows, cols, 3))
    # Rounded and saturated like the keyframe's blend, negatives to 0: a float to 8-bit add of 0
    # does both in one pass (the stubs do not allow the scalar).
    cv2.add(blended, 0.0, dst=out[y0:y1, x0:x1], dtype=cv2.CV_8U)  # type: ignore[call-overload]
