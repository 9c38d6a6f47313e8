"""Per-stream tracking: the detector runs only every N frames or when the face is lost, and a
still face gives a still result."""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest
from swaprtc.embedded.engine import EmbeddedEngine
from swaprtc.pipeline.detector import RetinaFaceDetector
from swaprtc.settings import Settings
from swaprtc.types import Face, SourceFace, SwapOptions

if TYPE_CHECKING:
    from swaprtc.models.store import ModelStore


@pytest.fixture(scope="module")
def engine(model_store: ModelStore) -> EmbeddedEngine:
    # Today's tracking, frame by frame (test_embedded_cadence.py covers the keyframe cadence).
    return EmbeddedEngine.from_store(
        model_store, Settings(detect_every=5, detect_every_tracked=5, swap_every=1)
    )


@pytest.fixture(scope="module")
def source(engine: EmbeddedEngine, grace_bgr: np.ndarray) -> SourceFace:
    return engine.prepare_source(grace_bgr)


def _frame(image: np.ndarray, dx: int = 0) -> np.ndarray:
    """640×480 webcam-like frame with the photo's face, shifted sideways by ``dx`` pixels."""
    small = cv2.resize(image, (int(image.shape[1] * 480 / image.shape[0]), 480), interpolation=cv2.INTER_AREA)
    canvas = np.full((480, 640 + 400, 3), 60, np.uint8)
    canvas[:, 200 : 200 + small.shape[1]] = small
    return np.ascontiguousarray(canvas[:, 200 - dx : 200 - dx + 640])


def test_detector_runs_every_n_frames_while_tracking(
    engine: EmbeddedEngine, source: SourceFace, obama_bgr: np.ndarray
) -> None:
    frame = _frame(obama_bgr)
    stream = engine.open_stream()
    swapped = [stream.process(frame, source, SwapOptions()).swapped for _ in range(10)]
    assert swapped == [1] * 10
    assert stream.detector_calls == 2  # frames 0 and 5


def test_redetects_when_the_face_leaves_and_comes_back_elsewhere(
    engine: EmbeddedEngine, source: SourceFace, obama_bgr: np.ndarray
) -> None:
    stream = engine.open_stream()
    for _ in range(3):
        assert stream.process(_frame(obama_bgr), source, SwapOptions()).swapped == 1
    calls = stream.detector_calls
    empty = np.full((480, 640, 3), 60, np.uint8)
    gone = stream.process(empty, source, SwapOptions())
    assert gone.swapped == 0 and gone.faces == () and np.array_equal(gone.frame, empty)
    assert stream.detector_calls == calls + 1  # lost, so it looked again at once
    # The face reappears far from where it was, between scheduled detections.
    moved = _frame(obama_bgr, dx=-180)
    back = stream.process(moved, source, SwapOptions())
    assert back.swapped == 1
    centre = back.faces[0].bbox.reshape(2, 2).mean(axis=0)
    fresh = engine.open_stream().process(moved, None, SwapOptions()).faces[0].bbox.reshape(2, 2).mean(axis=0)
    assert np.linalg.norm(centre - fresh) < 5
    assert stream.detector_calls >= calls + 2


def test_face_jumping_far_between_detections_is_found_again(
    engine: EmbeddedEngine, source: SourceFace, obama_bgr: np.ndarray
) -> None:
    stream = engine.open_stream()
    stream.process(_frame(obama_bgr), source, SwapOptions())  # detection on frame 0
    calls = stream.detector_calls
    jumped = stream.process(_frame(obama_bgr, dx=-200), source, SwapOptions())  # frame 1: no schedule
    assert jumped.swapped == 1 and stream.detector_calls == calls + 1
    x_centre = float(jumped.faces[0].bbox[[0, 2]].mean())
    still = engine.open_stream().process(_frame(obama_bgr), None, SwapOptions())
    x_before = float(still.faces[0].bbox[[0, 2]].mean())
    assert abs((x_centre - x_before) - (-200)) < 8


def test_still_face_does_not_shimmer(
    engine: EmbeddedEngine, source: SourceFace, obama_bgr: np.ndarray
) -> None:
    # A still face seen through camera noise: 30 frames of the same picture plus fresh sensor noise.
    base = _frame(obama_bgr)
    rng = np.random.default_rng(7)
    stream = engine.open_stream()
    inputs, outputs, meshes = [], [], []
    for _ in range(30):
        noisy = np.clip(base + rng.normal(0, 2.0, base.shape), 0, 255).astype(np.uint8)
        result = stream.process(noisy, source, SwapOptions())
        assert result.swapped == 1
        inputs.append(noisy)
        outputs.append(result.frame)
        meshes.append(result.faces[0].mesh)
    mesh_stack = np.stack(meshes)
    assert mesh_stack.std(axis=0).max() < 0.1  # px, over every one of the 468 points
    x0, y0, x1, y1 = result.faces[0].bbox.astype(int)
    face = (slice(y0, y1), slice(x0, x1))
    out_std = np.stack([o[face] for o in outputs]).astype(np.float32).std(axis=0)
    in_std = np.stack([i[face] for i in inputs]).astype(np.float32).std(axis=0)
    # The output flickers less than the camera noise itself does (the pasted texture is still),
    # nearly everywhere in the face box.
    assert out_std.mean() < in_std.mean()
    assert np.percentile(out_std, 99.5) < 4.0


def test_still_frame_without_noise_is_identical_frame_to_frame(
    engine: EmbeddedEngine, source: SourceFace, obama_bgr: np.ndarray
) -> None:
    frame = _frame(obama_bgr)
    stream = engine.open_stream()
    outs = [stream.process(frame, source, SwapOptions()).frame for _ in range(30)]
    # The crop is held while the face has not moved, so a still picture gives the very same result.
    assert all(np.array_equal(out, outs[0]) for out in outs[1:])


def test_resolution_change_mid_stream_starts_tracking_afresh(
    engine: EmbeddedEngine, source: SourceFace, obama_bgr: np.ndarray
) -> None:
    stream = engine.open_stream()
    frame = _frame(obama_bgr)
    for _ in range(2):
        stream.process(frame, source, SwapOptions())
    calls = stream.detector_calls
    smaller = cv2.resize(frame, (320, 240), interpolation=cv2.INTER_AREA)
    result = stream.process(smaller, source, SwapOptions())
    assert stream.detector_calls == calls + 1
    assert result.swapped == 1
    box = result.faces[0].bbox
    fresh = engine.open_stream().process(smaller, None, SwapOptions()).faces[0].bbox
    assert np.abs(box - fresh).max() < 3 and box[2] < 320


def test_moving_face_is_followed_without_visible_lag(
    engine: EmbeddedEngine, source: SourceFace, obama_bgr: np.ndarray
) -> None:
    # The face slides 4 px per frame (120 px/s at 30 fps) for 25 frames, never leaving the ROI.
    stream = engine.open_stream()
    for i in range(25):
        result = stream.process(_frame(obama_bgr, dx=4 * i), source, SwapOptions())
        assert result.swapped == 1
    last = _frame(obama_bgr, dx=4 * 24)
    exact = engine.open_stream().process(last, None, SwapOptions()).faces[0].mesh
    tracked = result.faces[0].mesh
    size = float(np.ptp(exact[:, 0]))
    lag = float(np.linalg.norm(tracked - exact, axis=1).mean())
    assert lag < 0.03 * size, (lag, size)
    assert stream.detector_calls == 5  # the scheduled ones only: tracking never lost the face


def _low_presence(monkeypatch: pytest.MonkeyPatch, engine: EmbeddedEngine) -> None:
    """The mesh still runs but sees no face (as for a profile or a hand over the face)."""
    real = engine.mesh_model.run3d
    monkeypatch.setattr(engine.mesh_model, "run3d", lambda frame, roi: (real(frame, roi)[0], 0.1))


def test_a_face_the_mesh_rejects_is_reported_unswapped(
    engine: EmbeddedEngine, source: SourceFace, obama_bgr: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = _frame(obama_bgr)
    box = engine.open_stream().process(frame, None, SwapOptions()).faces[0].bbox
    _low_presence(monkeypatch, engine)
    stream = engine.open_stream()
    for i in range(3):
        result = stream.process(frame, source, SwapOptions())
        assert result.swapped == 0 and np.array_equal(result.frame, frame)
        assert len(result.unswapped) == 1 and result.faces == result.unswapped
        # The detector's box, around the same face the mesh would have framed.
        centre = result.unswapped[0].bbox.reshape(2, 2).mean(axis=0)
        assert np.linalg.norm(centre - box.reshape(2, 2).mean(axis=0)) < 0.15 * (box[2] - box[0])
        # No mesh follows it, so the detector looks again on every frame while it is there.
        assert stream.detector_calls == i + 1


def test_a_face_lost_between_detections_is_reported_at_once(
    engine: EmbeddedEngine, source: SourceFace, obama_bgr: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = _frame(obama_bgr)
    stream = engine.open_stream()
    for _ in range(2):
        assert stream.process(frame, source, SwapOptions()).swapped == 1
    calls = stream.detector_calls
    _low_presence(monkeypatch, engine)  # e.g. a hand comes over the face between detector runs
    result = stream.process(frame, source, SwapOptions())
    assert stream.detector_calls == calls + 1
    assert result.swapped == 0 and len(result.unswapped) == 1
    monkeypatch.undo()
    back = stream.process(frame, source, SwapOptions())
    assert back.swapped == 1 and back.unswapped == ()


def test_a_face_whose_swap_fails_is_unswapped(
    engine: EmbeddedEngine, source: SourceFace, obama_bgr: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    import swaprtc.embedded.engine as embedded

    monkeypatch.setattr(embedded, "render_bounded", lambda *args: None)
    frame = _frame(obama_bgr)
    result = engine.open_stream().process(frame, source, SwapOptions())
    assert result.swapped == 0 and len(result.faces) == 1
    assert result.unswapped == result.faces and result.unswapped[0].mesh is not None


def _lag_after_a_jump(engine: EmbeddedEngine, obama_bgr: np.ndarray, gap_s: float | None) -> float:
    """Mean mesh distance from where the face really is, one frame after it moved 24 px."""
    stream = engine.open_stream()
    t = 0.0
    for _ in range(4):
        stream.process(_frame(obama_bgr), None, SwapOptions(), timestamp_s=None if gap_s is None else t)
        t += 1 / 30
    moved = _frame(obama_bgr, dx=24)
    t += 0.0 if gap_s is None else gap_s - 1 / 30
    tracked = stream.process(moved, None, SwapOptions(), timestamp_s=None if gap_s is None else t)
    exact = engine.open_stream().process(moved, None, SwapOptions()).faces[0].mesh
    return float(np.linalg.norm(tracked.faces[0].mesh - exact, axis=1).mean())


def test_smoothing_uses_the_real_time_between_frames(engine: EmbeddedEngine, obama_bgr: np.ndarray) -> None:
    nominal = _lag_after_a_jump(engine, obama_bgr, 1 / 30)
    # After dropped frames (half a second between processed frames) the filter must not hold the
    # face back as if only a thirtieth of a second had passed.
    dropped = _lag_after_a_jump(engine, obama_bgr, 0.5)
    assert dropped < 0.5 * nominal, (dropped, nominal)
    # Without timestamps, each frame counts as one at the nominal 30 fps.
    assert _lag_after_a_jump(engine, obama_bgr, None) == pytest.approx(nominal, rel=1e-3)


def test_a_person_given_a_source_is_swapped_with_swap_every_face_off(
    engine: EmbeddedEngine, source: SourceFace, obama_bgr: np.ndarray, astronaut_bgr: np.ndarray
) -> None:
    """Only the largest face is followed while "swap every face" is off, unless a person was
    given a source of their own (a click in the page): then that person must be swapped too."""
    from swaprtc.casting import SessionCasting

    def half(image: np.ndarray) -> np.ndarray:
        scale = 440 / image.shape[0]
        small = cv2.resize(image, (round(image.shape[1] * scale), 440), interpolation=cv2.INTER_AREA)
        canvas = np.full((480, 320, 3), 60, np.uint8)
        x0 = max(0, (small.shape[1] - 320) // 2)
        part = small[:, x0 : x0 + 320]
        canvas[20:460, (320 - part.shape[1]) // 2 : (320 - part.shape[1]) // 2 + part.shape[1]] = part
        return canvas

    frame = np.ascontiguousarray(np.hstack([half(obama_bgr), half(astronaut_bgr)]))
    casting = SessionCasting()
    casting.set_sources({"default": source, "b": engine.prepare_source(astronaut_bgr)})
    stream = engine.open_stream()
    first = stream.process(frame, None, SwapOptions(), casting=casting)
    assert len(first.faces) == 2 and first.swapped == 1  # only the largest
    other = next(c.person for c in casting.last if c.face is not first.faces[0])
    casting.assign(other, "b")
    for _ in range(3):
        result = stream.process(frame, None, SwapOptions(), casting=casting)
    assert result.swapped == 2 and not result.unswapped


class _Recording:
    """A detector that records the frames it was asked about and what its model saw."""

    def __init__(self, detector: RetinaFaceDetector) -> None:
        self.detector = detector
        self.inputs: list[tuple[int, ...]] = []

    def detect(self, frame: np.ndarray) -> list[Face]:
        self.inputs.append(self.detector._input(frame)[0].shape)
        return self.detector.detect(frame)


def test_the_periodic_detector_of_a_followed_face_reads_a_smaller_input_and_changes_nothing(
    model_store: ModelStore, source: SourceFace, obama_bgr: np.ndarray
) -> None:
    """While the one face is followed surely the detector only looks for a new face: it reads the
    frame padded to its strides (256×320 for 640×480), not the 320×320 square, and the swapped
    frames are byte for byte those of the square input."""
    settings = Settings(detect_every=5, detect_every_tracked=15, swap_every=3)
    engine = EmbeddedEngine.from_store(model_store, settings)
    frames = [_frame(obama_bgr, dx) for dx in range(0, 62, 2)]  # 31 frames: detector on 0, 15, 30
    cheap, square = engine.open_stream(), engine.open_stream()
    first, periodic = _Recording(engine.stream_detector), _Recording(engine.sure_detector)
    cheap.tracker.detector, cheap.tracker.sure_detector = first, periodic
    square.tracker.sure_detector = engine.stream_detector
    for frame in frames:
        a = cheap.process(frame, source, SwapOptions())
        b = square.process(frame, source, SwapOptions())
        assert a.swapped == b.swapped == 1
        assert np.array_equal(a.frame, b.frame)
    assert first.inputs == [(320, 320, 3)]  # finding the face: the square input, as always
    assert periodic.inputs == [(256, 320, 3), (256, 320, 3)]


def test_the_strides_fit_detector_finds_the_boxes_of_the_square_input(
    engine: EmbeddedEngine, obama_bgr: np.ndarray, grace_bgr: np.ndarray
) -> None:
    for image in (obama_bgr, grace_bgr):
        for size in ((640, 480), (1280, 720)):
            frame = cv2.resize(_frame(image), size, interpolation=cv2.INTER_AREA)
            square, fit = engine.stream_detector.detect(frame), engine.sure_detector.detect(frame)
            assert len(square) == len(fit) == 1
            # Within 1 % of the frame width (the padding the network sees differs).
            assert np.abs(square[0].bbox - fit[0].bbox).max() < size[0] / 100
            assert np.abs(square[0].kps - fit[0].kps).max() < size[0] / 100
