"""MediaPipe face mesh inference: crop a rotated square ROI to 192×192, run the network, map back.

Model contract (read from MediaPipe's face_landmark graph and the model itself): input NHWC
[1, 192, 192, 3] RGB scaled to [0, 1]; outputs [1, 1, 1, 1404] = 468 × (x, y, z) in crop pixels
and [1, 1, 1, 1] face-presence logit. ROIs follow MediaPipe: square, rotated so the eye line is
horizontal, 1.5× the face's extent.

Runtime: ONNX Runtime, on the model converted from the .tflite by ``convert.py`` (one runtime for
every model, no TFLite dependency at run time). The conversion is exact op for op; on the test
photos its landmarks are within 2e-4 crop pixels of ai-edge-litert running the original file.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import onnxruntime as ort

from swaprtc.embedded import mesh as m

INPUT_SIZE = 192
ROI_SCALE = 1.5


@dataclass(frozen=True)
class Roi:
    """A rotated square in frame pixel coordinates: centre, side length, roll angle (radians)."""

    cx: float
    cy: float
    size: float
    angle: float

    def crop_to_frame(self) -> np.ndarray:
        """2×3 affine taking crop pixel indices (0..191) to frame pixel coordinates."""
        c, s = np.cos(self.angle), np.sin(self.angle)
        k = self.size / INPUT_SIZE
        rot = np.array([[c, -s], [s, c]]) * k
        offset = np.array([self.cx, self.cy]) + rot @ np.array([0.5 - INPUT_SIZE / 2] * 2)
        return np.hstack([rot, offset[:, None]])


def _roi_around(points: np.ndarray, angle: float, scale: float) -> Roi:
    """Square ROI around ``points`` in the frame rotated by ``angle``, ``scale`` × the long side."""
    c, s = np.cos(angle), np.sin(angle)
    local = points @ np.array([[c, -s], [s, c]])  # rotate by -angle
    lo, hi = local.min(axis=0), local.max(axis=0)
    centre_local = (lo + hi) / 2
    centre = np.array([[c, -s], [s, c]]) @ centre_local
    return Roi(float(centre[0]), float(centre[1]), float(max(hi - lo) * scale), angle)


def roi_from_detection(bbox: np.ndarray, kps: np.ndarray) -> Roi:
    """ROI from a detector box and its eye keypoints."""
    le, re = kps[0], kps[1]
    angle = float(np.arctan2(re[1] - le[1], re[0] - le[0]))
    corners = np.array([[bbox[0], bbox[1]], [bbox[2], bbox[1]], [bbox[0], bbox[3]], [bbox[2], bbox[3]]])
    # A detector box is axis-aligned; the face inside it is what matters, so use its centre and
    # extent rather than the rotated corners (which would inflate the ROI for tilted faces).
    centre = corners.mean(axis=0)
    side = float(max(bbox[2] - bbox[0], bbox[3] - bbox[1])) * ROI_SCALE
    return Roi(float(centre[0]), float(centre[1]), side, angle)


def roi_from_mesh(mesh: np.ndarray) -> Roi:
    """ROI for the next frame from this frame's mesh (MediaPipe's tracking step)."""
    pts = mesh[:, :2].astype(np.float64)
    le, re = pts[m.EYE_OUTER_LEFT], pts[m.EYE_OUTER_RIGHT]
    angle = float(np.arctan2(re[1] - le[1], re[0] - le[0]))
    return _roi_around(pts, angle, ROI_SCALE)


class FaceMeshModel:
    """Runs the face mesh network (an ONNX Runtime session) on ROIs of frames. Thread-safe."""

    def __init__(self, session: ort.InferenceSession) -> None:
        self.session = session
        self.input_name = session.get_inputs()[0].name
        outs = session.get_outputs()
        # The landmark tensor is the one with 1404 values; the other is the face-presence logit.
        sizes = [int(np.prod([d for d in o.shape if isinstance(d, int)])) for o in outs]
        self._mesh_idx = int(np.argmax(sizes))
        self._score_idx = 1 - self._mesh_idx

    def crop(self, frame: np.ndarray, roi: Roi) -> np.ndarray:
        """The ROI resampled to the network input, (1, 192, 192, 3) float32 RGB in [0, 1]."""
        patch = cv2.warpAffine(
            frame,
            roi.crop_to_frame(),
            (INPUT_SIZE, INPUT_SIZE),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT,
        )
        rgb = cv2.cvtColor(patch, cv2.COLOR_BGR2RGB)
        return (rgb.astype(np.float32) * np.float32(1.0 / 255.0))[None]

    def run_tensor(self, tensor: np.ndarray) -> tuple[np.ndarray, float]:
        """Raw network output: (468, 3) crop-pixel landmarks and the face-presence probability."""
        outs = self.session.run(None, {self.input_name: tensor})
        pts = outs[self._mesh_idx].reshape(m.NUM_POINTS, 3)
        logit = float(outs[self._score_idx].reshape(-1)[-1])
        return pts, float(1.0 / (1.0 + np.exp(-logit)))

    def run(self, frame: np.ndarray, roi: Roi) -> tuple[np.ndarray, float]:
        """(468, 2) float32 landmarks in frame pixels, and the face-presence probability."""
        mesh, score = self.run3d(frame, roi)
        return np.ascontiguousarray(mesh[:, :2]), score

    def run3d(self, frame: np.ndarray, roi: Roi) -> tuple[np.ndarray, float]:
        """(468, 3) float32: x, y in frame pixels and depth z (larger = farther from the camera)
        in the same pixel scale, and the face-presence probability."""
        pts, score = self.run_tensor(self.crop(frame, roi))
        # Crop coordinates are continuous (pixel i spans [i, i+1]); shift to pixel indices.
        xy = pts[:, :2].astype(np.float64) - 0.5
        affine = roi.crop_to_frame()
        out = np.empty((m.NUM_POINTS, 3), np.float32)
        out[:, :2] = xy @ affine[:, :2].T + affine[:, 2]
        # The network's z is in crop pixels like x and y; the ROI's scale takes it to the frame.
        out[:, 2] = pts[:, 2] * (roi.size / INPUT_SIZE)
        return out, score
