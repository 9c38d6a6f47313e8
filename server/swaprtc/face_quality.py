"""Why a source face may swap badly: turned, occluded, small or blurred.

Pure functions of the photo, the face box, its five keypoints and its detection score, so a
warning can be explained and tested without a model. The thresholds were set on the test photos
(tests/data) and on turned, covered, shrunk and blurred versions of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from swaprtc.types import Face

TURNED_RATIO = 0.22  # nose offset from the eyes' midline, in eye distances (0 = frontal)
OCCLUDED_SCORE = 0.9  # detector confidence below which part of the face is probably covered
SMALL_PX = 80  # shorter side of the face box in photo pixels (InSwapper works on 128 px crops)
BLUR_SIZE = 128  # the face is resized to this width before its sharpness is measured
BLURRED_VARIANCE = 40.0  # variance of the Laplacian below which the face is blurred


@dataclass(frozen=True)
class FaceWarning:
    code: str  # turned | occluded | small | blurred
    message: str

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


def turn_ratio(kps: np.ndarray) -> float:
    """How far the nose sits from the eyes' perpendicular bisector, in eye distances.

    Measured along the eye line, so a tilted (rolled) frontal face reads ~0 and only a turned
    (yawed) one reads high.
    """
    left, right, nose = (np.asarray(kps[i], np.float64) for i in range(3))
    axis = right - left
    dist = float(np.linalg.norm(axis))
    if dist < 1e-6:
        return 1.0
    return abs(float(np.dot(nose - (left + right) / 2, axis / dist))) / dist


def sharpness(image: np.ndarray, bbox: np.ndarray) -> float:
    """Variance of the Laplacian of the face box at a fixed size: low means blurred."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (round(float(v)) for v in bbox[:4])
    x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    if x2 - x1 < 2 or y2 - y1 < 2:
        return 0.0
    crop = cv2.cvtColor(image[y1:y2, x1:x2], cv2.COLOR_BGR2GRAY)
    scale = BLUR_SIZE / crop.shape[1]
    size = (BLUR_SIZE, max(2, round(crop.shape[0] * scale)))
    crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    return float(cv2.Laplacian(crop, cv2.CV_64F).var())


def face_warnings(image: np.ndarray, face: Face) -> list[FaceWarning]:
    warnings: list[FaceWarning] = []
    if turn_ratio(face.kps) > TURNED_RATIO:
        warnings.append(
            FaceWarning(
                "turned", "the face is turned to the side: a photo looking at the camera swaps better"
            )
        )
    if face.score < OCCLUDED_SCORE:
        warnings.append(
            FaceWarning(
                "occluded",
                "part of the face may be covered (hair, a hand, glasses or a mask): "
                "a clear view of the whole face swaps better",
            )
        )
    side = min(face.width, face.height)
    if side < SMALL_PX:
        warnings.append(
            FaceWarning(
                "small",
                f"the face is only {int(side)} px across: use a photo where it is at least {SMALL_PX} px",
            )
        )
    elif sharpness(image, face.bbox) < BLURRED_VARIANCE:
        # A small face is blurred by its upscaling anyway: one warning says enough.
        warnings.append(FaceWarning("blurred", "the face is blurred: use a sharper photo"))
    return warnings
