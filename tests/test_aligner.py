"""Alignment: templates, similarity fit, crops and inverse transforms."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest
from swaprtc.pipeline.aligner import (
    ARCFACE_112,
    arcface_template,
    estimate_arcface,
    estimate_ffhq,
    ffhq_template,
    invert,
    transform_points,
    umeyama,
    warp_crop,
)
from swaprtc.pipeline.detector import RetinaFaceDetector

if TYPE_CHECKING:
    import onnxruntime as ort


def test_arcface_template_sizes() -> None:
    np.testing.assert_allclose(arcface_template(112), ARCFACE_112)
    np.testing.assert_allclose(arcface_template(224), ARCFACE_112 * 2)
    t128 = arcface_template(128)
    # 128 is not a multiple of 112: scale by 1 and shift x by 8 (the InSwapper crop)
    np.testing.assert_allclose(t128[:, 0], ARCFACE_112[:, 0] + 8.0)
    np.testing.assert_allclose(t128[:, 1], ARCFACE_112[:, 1])
    t256 = arcface_template(256)
    np.testing.assert_allclose(t256[:, 0], ARCFACE_112[:, 0] * 2 + 16.0)
    np.testing.assert_allclose(ffhq_template(512)[0], [0.37691676 * 512, 0.46864664 * 512])


def test_umeyama_recovers_a_known_similarity() -> None:
    rng = np.random.default_rng(3)
    src = rng.uniform(0, 300, (5, 2))
    angle, scale, shift = 0.4, 1.7, np.array([12.0, -30.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = src @ (scale * rot).T + shift
    m = umeyama(src, dst)
    np.testing.assert_allclose(m[:, :2], scale * rot, atol=1e-9)
    np.testing.assert_allclose(m[:, 2], shift, atol=1e-9)
    np.testing.assert_allclose(transform_points(invert(m), dst), src, atol=1e-9)


def test_umeyama_never_reflects() -> None:
    src = np.random.default_rng(5).uniform(0, 100, (5, 2))
    dst = src * [-1, 1]  # a mirror image: the best similarity is a rotation, never a reflection
    m = umeyama(src, dst)
    assert np.linalg.det(m[:, :2]) > 0
    assert not np.allclose(m[:, :2], [[-1, 0], [0, 1]], atol=0.1)


@pytest.fixture(scope="module")
def astronaut_kps(retinaface_session: ort.InferenceSession, astronaut_bgr: np.ndarray) -> np.ndarray:
    return RetinaFaceDetector(retinaface_session).detect(astronaut_bgr)[0].kps


@pytest.mark.parametrize("size", [112, 128])
def test_real_face_lands_on_the_template(
    astronaut_kps: np.ndarray, astronaut_bgr: np.ndarray, size: int
) -> None:
    m = estimate_arcface(astronaut_kps, size)
    mapped = transform_points(m, astronaut_kps)
    # five points, four degrees of freedom: a real face fits the template within a few pixels
    assert np.abs(mapped - arcface_template(size)).max() < 0.06 * size
    crop = warp_crop(astronaut_bgr, m, size)
    assert crop.shape == (size, size, 3) and crop.dtype == np.uint8
    # the crop is the face: eyes sit where the template says, and it is not black padding
    assert crop.mean() > 40


def test_ffhq_crop_is_512(astronaut_kps: np.ndarray, astronaut_bgr: np.ndarray) -> None:
    m = estimate_ffhq(astronaut_kps)
    crop = warp_crop(astronaut_bgr, m, 512)
    assert crop.shape == (512, 512, 3)
    np.testing.assert_allclose(transform_points(m, astronaut_kps), ffhq_template(), atol=0.06 * 512)
