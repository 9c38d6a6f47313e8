"""dlib's 128-d face descriptor (ResNet, CC0 weights from ``face-recognition-models``)."""

from __future__ import annotations

import cv2
import numpy as np

from swaprtc.errors import SwapRTCError


class QualityExtraMissing(SwapRTCError):
    code = "quality_extra_missing"


class DlibRecognizer:
    """Finds the face with dlib's own HOG detector (falling back to a given box) and describes it."""

    def __init__(self) -> None:
        try:
            import dlib
            import face_recognition_models as frm
        except ImportError as exc:
            raise QualityExtraMissing(
                f"the quality benchmark needs the optional 'quality' extra ({exc}): "
                "pip install -e '.[quality]'"
            ) from exc
        self._dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.shape = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
        self.net = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
        self.version = f"dlib {dlib.__version__}, face-recognition-models {getattr(frm, '__version__', '?')}"

    def describe(self, bgr: np.ndarray, hint: np.ndarray | None = None) -> np.ndarray | None:
        """(128,) descriptor of the face nearest ``hint`` (x1, y1, x2, y2), or None without a face."""
        rgb = np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        found = list(self.detector(rgb, 1))
        if found:
            if hint is not None:
                cx, cy = (hint[0] + hint[2]) / 2, (hint[1] + hint[3]) / 2
                found.sort(key=lambda r: (r.center().x - cx) ** 2 + (r.center().y - cy) ** 2)
            else:
                found.sort(key=lambda r: -r.area())
            rect = found[0]
        elif hint is not None:
            x1, y1, x2, y2 = (round(float(v)) for v in hint)
            rect = self._dlib.rectangle(x1, y1, x2, y2)
        else:
            return None
        shape = self.shape(rgb, rect)
        return np.asarray(self.net.compute_face_descriptor(rgb, shape), dtype=np.float32)
