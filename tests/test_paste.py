"""Paste-back: crop-region version against the insightface-style reference, and locality."""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest
from swaprtc.pipeline.aligner import estimate_arcface, transform_points, warp_crop
from swaprtc.pipeline.detector import RetinaFaceDetector
from swaprtc.pipeline.paste import crop_region, mask_template, paste_back, paste_back_reference, paste_into

if TYPE_CHECKING:
    import onnxruntime as ort


@pytest.fixture(scope="module")
def detector(retinaface_session: ort.InferenceSession) -> RetinaFaceDetector:
    return RetinaFaceDetector(retinaface_session)


@pytest.mark.parametrize("photo", ["astronaut_bgr", "grace_bgr", "obama_bgr"])
def test_matches_reference_and_stays_in_region(
    detector: RetinaFaceDetector, photo: str, request: pytest.FixtureRequest
) -> None:
    frame = request.getfixturevalue(photo)
    face = detector.detect(frame)[0]
    m = estimate_arcface(face.kps, 128)
    crop = warp_crop(frame, m, 128)
    swapped = 255 - crop  # a stand-in swap with an obvious effect

    ours = paste_back(frame, swapped, m)
    ref = paste_back_reference(frame, swapped, crop, m)
    x0, y0, x1, y1 = crop_region(m, 128, frame.shape)

    # every pixel outside the warped crop's bounding box is byte-identical to the input
    outside = np.ones(frame.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(ours[outside], frame[outside])
    assert np.array_equal(ref[outside], frame[outside])

    # inside the face (the keypoint hull) the result is the swapped face, as in the reference
    hull = np.zeros(frame.shape[:2], np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(face.kps.astype(np.int32)), 1)
    inside = hull.astype(bool)
    # expected: the inverted face, after the same down/up resampling an unmodified crop goes through
    resampled = paste_back(frame, crop, m)
    expected = 255 - resampled[inside].astype(int)
    assert np.abs(ours[inside].astype(int) - expected).mean() < 1.5
    assert np.abs(ours[inside].astype(int) - frame[inside].astype(int)).mean() > 40
    diff = np.abs(ours.astype(int) - ref.astype(int))[y0:y1, x0:x1]
    assert diff.mean() < 2.0
    assert np.abs(ours[inside].astype(int) - ref[inside].astype(int)).mean() < 1.0


def test_mask_template_is_feathered_cached_and_read_only() -> None:
    mask = mask_template(128)
    assert mask is mask_template(128)
    assert mask.dtype == np.float32 and not mask.flags.writeable
    assert mask[64, 64] == pytest.approx(1.0, abs=1e-3)
    assert mask[0, 0] < 0.01 and mask[64, 0] < 0.05
    assert 0.05 < mask[64, 8] < 0.95  # a soft edge, not a hard one
    with pytest.raises(ValueError):
        mask[0, 0] = 1.0


def test_face_partly_outside_the_frame() -> None:
    frame = np.full((120, 160, 3), 50, np.uint8)
    kps = np.array([[-10, 40], [20, 40], [5, 60], [-8, 80], [18, 80]], np.float32)  # half off the left edge
    m = estimate_arcface(kps, 128)
    crop = np.full((128, 128, 3), 250, np.uint8)
    before = frame.copy()
    region = paste_into(frame, crop, m)
    assert region is not None and region[0] == 0
    assert frame[60, 6].min() > 200  # the visible half of the face was pasted
    assert np.array_equal(frame[:, region[2] :], before[:, region[2] :])


def test_face_entirely_outside_the_frame() -> None:
    frame = np.full((60, 80, 3), 50, np.uint8)
    kps = np.array([[300, 300], [330, 300], [315, 320], [302, 340], [328, 340]], np.float32)
    assert paste_into(frame, np.zeros((128, 128, 3), np.uint8), estimate_arcface(kps, 128)) is None
    assert (frame == 50).all()


def test_crop_lands_where_it_came_from(astronaut_bgr: np.ndarray, detector: RetinaFaceDetector) -> None:
    # paste back an unmodified crop: the face is reproduced (up to resampling), i.e. no offset
    face = detector.detect(astronaut_bgr)[0]
    m = estimate_arcface(face.kps, 128)
    out = paste_back(astronaut_bgr, warp_crop(astronaut_bgr, m, 128), m)
    x0, y0, x1, y1 = crop_region(m, 128, astronaut_bgr.shape)
    err = np.abs(out.astype(int) - astronaut_bgr.astype(int))[y0:y1, x0:x1].mean()
    assert err < 3.0
    # the template points map back onto the detected keypoints
    from swaprtc.pipeline.aligner import arcface_template, invert

    assert np.abs(transform_points(invert(m), arcface_template(128)) - face.kps).max() < 8
