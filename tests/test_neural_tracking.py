"""The neural engine follows faces between detector runs: on real photos moved, turned and scaled
frame by frame (the motion is known exactly), the five points it carries with the face mesh stay
within 2 % of the inter-ocular distance of the detector's points moved by that same motion, and the
swap's alignment moves with them.

Why not compare with a fresh detection on every frame? RetinaFace-MNet0.25's own points wander
2.4-4.3 % of the inter-ocular distance between frames of one still photo moved by a known
transform, so such a comparison mostly measures the detector. ``test_detector_jitter_is_measured``
records that next to the tracking error, so both figures stay honest.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest
from swaprtc.embedded.engine import converted_landmark_model, make_session
from swaprtc.embedded.landmarks import FaceMeshModel
from swaprtc.pipeline.aligner import estimate_arcface
from swaprtc.pipeline.detector import RetinaFaceDetector
from swaprtc.pipeline.embedder import ArcFaceEmbedder
from swaprtc.pipeline.keypoints import carry_points, inter_ocular, point_error, similarity_fit
from swaprtc.pipeline.neural import NeuralEngine, NeuralStream, Tracking
from swaprtc.pipeline.swapper import InSwapper
from swaprtc.types import SourceFace, SwapOptions

from tests.conftest import load_bgr
from tests.tiny_models import arcface_model, inswapper_model, make_emap, session

if TYPE_CHECKING:
    from swaprtc.models.store import ModelStore

DETECT_EVERY = 5
FRAMES = 20
# Each real photo under two kinds of generated motion (shift, turn, zoom, or all three at once).
CASES = [
    ("obama.jpg", "shift"),
    ("obama.jpg", "rotate"),
    ("grace_hopper.jpg", "scale"),
    ("grace_hopper.jpg", "all"),
    ("astronaut.png", "all"),
    ("astronaut.png", "shift"),
]


@pytest.fixture(scope="module")
def engine(model_store: ModelStore) -> NeuralEngine:
    emap = make_emap()
    mesh = FaceMeshModel(make_session(converted_landmark_model(model_store.ensure("face_landmark")), 1))
    return NeuralEngine(
        RetinaFaceDetector(model_store.session("retinaface_mnet025")),
        ArcFaceEmbedder(session(arcface_model())),
        InSwapper(session(inswapper_model("invert", emap=emap)), emap),
        tracking=Tracking(mesh, DETECT_EVERY),
    )


@pytest.fixture(scope="module")
def every_frame(engine: NeuralEngine) -> NeuralEngine:
    """The same models, detector on every frame."""
    return NeuralEngine(engine.detector, engine.embedder, engine.swapper)


@pytest.fixture(scope="module")
def source(engine: NeuralEngine, astronaut_bgr: np.ndarray) -> SourceFace:
    return engine.prepare_source(astronaut_bgr)


def moving(photo: np.ndarray, kind: str, frames: int = FRAMES) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """640×480 frames of ``photo`` (460 px tall) moved along one cycle of ``kind``; yields each
    frame with the 2×3 transform from the photo to it."""
    scale0 = 460 / photo.shape[0]
    base = cv2.resize(photo, None, fx=scale0, fy=scale0, interpolation=cv2.INTER_AREA)
    for i in range(frames):
        phase = 2 * np.pi * i / frames
        angle = {"rotate": 12.0, "all": 8.0}.get(kind, 0.0) * np.sin(phase)
        zoom = 1 + {"scale": 0.2, "all": 0.1}.get(kind, 0.0) * np.sin(phase)
        dx = {"shift": 60.0, "all": 40.0}.get(kind, 0.0) * np.sin(phase)
        dy = {"shift": 20.0, "all": 15.0}.get(kind, 0.0) * np.sin(2 * phase)
        m = cv2.getRotationMatrix2D((base.shape[1] / 2, base.shape[0] / 2), angle, zoom)
        m[0, 2] += (640 - base.shape[1]) / 2 + dx
        m[1, 2] += (480 - base.shape[0]) / 2 + dy
        yield cv2.warpAffine(base, m, (640, 480), borderValue=(90, 90, 90)), m


def apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return np.asarray(pts, np.float64) @ m[:, :2].T + m[:, 2]


def invert(m: np.ndarray) -> np.ndarray:
    return np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2]


def follow(stream: NeuralStream, photo: np.ndarray, kind: str) -> list[tuple[np.ndarray, np.ndarray, bool]]:
    """Per frame: (tracked points, the last detection's points moved by the true motion, whether
    the detector ran on that frame)."""
    assert stream.tracker is not None
    out = []
    calls, anchor = 0, np.zeros((5, 2))
    for i, (frame, m) in enumerate(moving(photo, kind)):
        chosen = stream.locate(frame, False, i / 30, {})
        assert len(chosen) == 1
        detected = stream.tracker.detector_calls != calls
        if detected:
            calls, anchor = stream.tracker.detector_calls, apply(invert(m), chosen[0].kps)
        out.append((chosen[0].kps, apply(m, anchor), detected))
    return out


@pytest.mark.parametrize(("name", "kind"), CASES)
def test_tracked_points_follow_the_detectors(engine: NeuralEngine, name: str, kind: str) -> None:
    frames = follow(engine.open_stream(), load_bgr(name), kind)
    # The detector ran on the first frame and then every DETECT_EVERY frames, not more.
    assert [d for _, _, d in frames] == [i % DETECT_EVERY == 0 for i in range(FRAMES)]
    errors = [point_error(kps, ref) for kps, ref, detected in frames if not detected]
    assert np.mean(errors) <= 0.02, np.mean(errors)
    assert np.max(errors) <= 0.06, np.max(errors)  # the fastest frames move ~19 px


def test_swap_alignment_moves_with_the_face(
    engine: NeuralEngine, every_frame: NeuralEngine, source: SourceFace, grace_bgr: np.ndarray
) -> None:
    """The swap made from tracked points is the swap made from the detector's points, to within the
    same error: the face part of the aligned crop (its central 80×80 of 128×128) lands within 2 % of
    the inter-ocular distance, and the pixels agree far more closely than a swapped face agrees
    with the unswapped one."""
    tracked_stream = engine.open_stream()
    grid = np.stack(np.meshgrid(np.arange(24, 105, 8), np.arange(24, 105, 8)), -1).reshape(-1, 2)
    shifts, pixel_diffs, swap_effects = [], [], []
    for i, (frame, m) in enumerate(moving(grace_bgr, "all")):
        result = tracked_stream.process(frame, source, SwapOptions(), timestamp_s=i / 30)
        assert result.swapped == 1
        if i == 0:
            anchor = apply(invert(m), result.faces[0].kps)
        if i % DETECT_EVERY == 0:
            anchor = apply(invert(m), result.faces[0].kps)
            continue
        reference = apply(m, anchor).astype(np.float32)
        a = cv2.invertAffineTransform(estimate_arcface(result.faces[0].kps, 128))
        b = cv2.invertAffineTransform(estimate_arcface(reference, 128))
        shifts.append(
            np.linalg.norm(apply(a, grid) - apply(b, grid), axis=1).mean() / inter_ocular(reference)
        )
        # The swap with the reference points, through the same stages.
        stub = NeuralEngine(_Fixed(reference, result.faces[0]), engine.embedder, engine.swapper)
        ref_out = stub.open_stream().process(frame, source, SwapOptions()).frame
        x1, y1, x2, y2 = result.faces[0].bbox.astype(int)
        h, w = y2 - y1, x2 - x1
        region = (slice(y1 + h // 4, y2 - h // 4), slice(x1 + w // 4, x2 - w // 4))
        pixel_diffs.append(np.abs(result.frame[region].astype(int) - ref_out[region].astype(int)).mean())
        swap_effects.append(np.abs(ref_out[region].astype(int) - frame[region].astype(int)).mean())
    assert np.mean(shifts) <= 0.02, np.mean(shifts)
    assert np.mean(pixel_diffs) < 0.1 * np.mean(swap_effects), (np.mean(pixel_diffs), np.mean(swap_effects))


class _Fixed:
    """A detector that reports one face at given points."""

    def __init__(self, kps: np.ndarray, like: object) -> None:
        from swaprtc.types import Face

        assert isinstance(like, Face)
        self.face = Face(bbox=like.bbox, score=like.score, kps=kps)

    def detect(self, frame: np.ndarray) -> list[object]:
        return [self.face]


def test_detector_runs_again_when_the_face_is_lost(
    engine: NeuralEngine, source: SourceFace, obama_bgr: np.ndarray
) -> None:
    frames = [f for f, _ in moving(obama_bgr, "shift", 6)]
    blank = np.full_like(frames[0], 90)
    stream = engine.open_stream()
    assert stream.process(frames[0], source, SwapOptions()).swapped == 1
    assert stream.tracker is not None and stream.tracker.detector_calls == 1
    gone = stream.process(blank, source, SwapOptions())  # lost between scheduled detector runs
    assert gone.swapped == 0 and gone.faces == ()
    assert stream.tracker.detector_calls == 2
    back = stream.process(frames[3], source, SwapOptions())  # back at once, not after N frames
    assert back.swapped == 1 and stream.tracker.detector_calls == 3


def test_two_faces_tracked_and_swapped(
    engine: NeuralEngine, source: SourceFace, two_faces: np.ndarray
) -> None:
    stream = engine.open_stream()
    results = [stream.process(two_faces, source, SwapOptions(many_faces=True)) for _ in range(DETECT_EVERY)]
    assert all(r.swapped == 2 and r.unswapped == () for r in results)
    one = engine.open_stream()
    single = [one.process(two_faces, source, SwapOptions()) for _ in range(3)]
    # One-face mode: the other face is reported for hiding on every frame, tracked or not.
    assert all(r.swapped == 1 and len(r.unswapped) == 1 for r in single)


def test_detector_jitter_is_measured(engine: NeuralEngine, grace_bgr: np.ndarray) -> None:
    """The reference the issue names (a fresh detection per frame) is itself noisy: recorded here."""
    jitter = []
    first = None
    for frame, m in moving(grace_bgr, "all", frames=10):
        kps = engine.detector.detect(frame)[0].kps
        first = apply(invert(m), kps) if first is None else first
        jitter.append(point_error(kps, apply(m, first)))
    assert 0.005 < np.mean(jitter[1:]) < 0.06


def test_carry_points_is_exact_for_similarity_motion() -> None:
    rng = np.random.default_rng(0)
    mesh = rng.uniform(100, 300, (468, 2))
    kps = rng.uniform(150, 250, (5, 2))
    m = cv2.getRotationMatrix2D((200, 200), 17.0, 1.13)
    m[:, 2] += (12.5, -7.25)
    np.testing.assert_allclose(carry_points(kps, mesh, apply(m, mesh)), apply(m, kps), atol=1e-3)
    np.testing.assert_allclose(similarity_fit(mesh, apply(m, mesh)), m, atol=1e-9)


def test_a_face_the_mesh_rejects_is_swapped_with_the_detectors_points(
    engine: NeuralEngine, source: SourceFace, grace_bgr: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The neural swap needs only five points: a face the mesh cannot follow (a profile, a hand
    over it) is still swapped, with the detector's points, and the detector runs on every frame."""
    assert engine.tracking is not None
    mesh_model = engine.tracking.mesh_model
    real = mesh_model.run3d
    monkeypatch.setattr(mesh_model, "run3d", lambda frame, roi: (real(frame, roi)[0], 0.1))
    stream = engine.open_stream()
    assert stream.tracker is not None
    detected = engine.detector.detect(grace_bgr)[0]
    for i in range(3):
        result = stream.process(grace_bgr, source, SwapOptions(), timestamp_s=i / 30)
        assert result.swapped == 1 and result.unswapped == ()
        np.testing.assert_allclose(result.faces[0].kps, detected.kps)
        assert stream.tracker.detector_calls == i + 1
