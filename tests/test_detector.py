"""Detectors: the real RetinaFace-MNet0.25 on a real photo, and SCRFD decoding against a tiny
model whose outputs are known."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest
from swaprtc.pipeline.detector import RetinaFaceDetector, ScrfdDetector

from tests.tiny_models import scrfd_model, scrfd_with_face, session

if TYPE_CHECKING:
    import onnxruntime as ort


def test_retinaface_on_astronaut(retinaface_session: ort.InferenceSession, astronaut_bgr: np.ndarray) -> None:
    faces = RetinaFaceDetector(retinaface_session).detect(astronaut_bgr)
    assert len(faces) == 1
    face = faces[0]
    assert face.score > 0.99
    np.testing.assert_allclose(face.bbox, [178, 59, 273, 178], atol=3)
    expected = [[203, 101], [247, 103], [223, 130], [201, 139], [246, 141]]
    np.testing.assert_allclose(face.kps, expected, atol=3)


def test_retinaface_finds_nothing_on_a_blank_image(retinaface_session: ort.InferenceSession) -> None:
    blank = np.full((240, 320, 3), 127, dtype=np.uint8)
    assert RetinaFaceDetector(retinaface_session).detect(blank) == []


def test_retinaface_scales_back_to_frame_coordinates(
    retinaface_session: ort.InferenceSession, astronaut_bgr: np.ndarray
) -> None:
    import cv2

    big = cv2.resize(astronaut_bgr, (1024, 1024))
    face = RetinaFaceDetector(retinaface_session).detect(big)[0]
    np.testing.assert_allclose(face.bbox, np.array([178, 59, 273, 178]) * 2, atol=6)


def test_scrfd_decodes_a_known_anchor() -> None:
    outs, _ = scrfd_with_face((10, 12), anchor=1, score=0.9)
    det = ScrfdDetector(session(scrfd_model(outs)))
    # a 1280×960 frame letterboxes at scale 0.5: model pixels × 2 are frame pixels
    frame = np.zeros((960, 1280, 3), dtype=np.uint8)
    faces = det.detect(frame)
    assert len(faces) == 1
    cx, cy = 10 * 8, 12 * 8
    np.testing.assert_allclose(faces[0].bbox, np.array([cx - 16, cy - 24, cx + 32, cy + 40]) * 2, atol=1e-3)
    kps = np.array([[cx - 8, cy - 8], [cx + 8, cy - 8], [cx, cy], [cx - 8, cy + 8], [cx + 8, cy + 8]]) * 2
    np.testing.assert_allclose(faces[0].kps, kps, atol=1e-3)
    assert faces[0].score == pytest.approx(0.9)


@pytest.mark.parametrize("order", [[8, 0, 4, 2, 6, 1, 5, 3, 7], [2, 1, 0, 5, 4, 3, 8, 7, 6]])
def test_scrfd_outputs_in_another_order(order: list[int]) -> None:
    """Exports order the 9 heads differently: they are told apart by shape, not position."""
    outs, _ = scrfd_with_face((10, 12), anchor=1, score=0.9)
    # A second face on the stride-32 head: its anchors must pair with stride 32's centres.
    big = (3 * 20 + 4) * 2  # cell (4, 3) of the 20×20 grid, anchor 0
    outs[2][big, 0] = 0.8
    outs[5][big] = [1, 1, 1, 1]
    frame = np.zeros((640, 640, 3), np.uint8)
    expected = ScrfdDetector(session(scrfd_model(outs))).detect(frame)
    shuffled = session(scrfd_model(outs, order=order))
    default_names = [o.name for o in session(scrfd_model(outs)).get_outputs()]
    assert [o.name for o in shuffled.get_outputs()] != default_names
    faces = ScrfdDetector(shuffled).detect(frame)
    assert len(faces) == len(expected) == 2
    for got, want in zip(faces, expected, strict=True):
        np.testing.assert_allclose(got.bbox, want.bbox)
        np.testing.assert_allclose(got.kps, want.kps)
    np.testing.assert_allclose(faces[0].bbox, [4 * 32 - 32, 3 * 32 - 32, 4 * 32 + 32, 3 * 32 + 32], atol=1e-3)


def test_scrfd_threshold_and_nms() -> None:
    outs, idx = scrfd_with_face((10, 12), anchor=0, score=0.8)
    outs[0][idx + 1, 0] = 0.7  # same cell, other anchor: an overlapping duplicate
    outs[3][idx + 1] = [2, 3, 4, 5]
    outs[0][idx + 40, 0] = 0.4  # below the 0.5 threshold
    faces = ScrfdDetector(session(scrfd_model(outs))).detect(np.zeros((640, 640, 3), np.uint8))
    assert len(faces) == 1 and faces[0].score == pytest.approx(0.8)


def test_scrfd_requires_nine_outputs() -> None:
    from tests.tiny_models import arcface_model

    with pytest.raises(ValueError, match="9 outputs"):
        ScrfdDetector(session(arcface_model()))
