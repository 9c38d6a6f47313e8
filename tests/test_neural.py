"""The neural engine end to end on real photos, with the real RetinaFace detector and tiny
stand-ins (real I/O contracts) for ArcFace, InSwapper and GFPGAN."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest
from swaprtc.errors import BadImageError, NoFaceError
from swaprtc.models.store import ModelStore
from swaprtc.pipeline.aligner import estimate_arcface
from swaprtc.pipeline.detector import RetinaFaceDetector
from swaprtc.pipeline.embedder import ArcFaceEmbedder
from swaprtc.pipeline.enhancer import GfpganEnhancer
from swaprtc.pipeline.neural import NeuralEngine, NeuralIdentity
from swaprtc.pipeline.paste import crop_region
from swaprtc.pipeline.swapper import InSwapper, identity_latent
from swaprtc.settings import Settings
from swaprtc.types import Face, SourceFace, SwapOptions

from tests.tiny_models import (
    TinyStore,
    arcface_model,
    colour_matrix,
    gfpgan_model,
    inswapper_model,
    make_emap,
    session,
)


def build_engine(retinaface_session: ort.InferenceSession, effect: str = "invert") -> NeuralEngine:
    emap = make_emap()
    return NeuralEngine(
        RetinaFaceDetector(retinaface_session),
        ArcFaceEmbedder(session(arcface_model())),
        InSwapper(session(inswapper_model(effect, emap=emap)), emap),
        GfpganEnhancer(session(gfpgan_model())),
    )


@pytest.fixture(scope="module")
def engine(retinaface_session: ort.InferenceSession) -> NeuralEngine:
    return build_engine(retinaface_session)


@pytest.fixture(scope="module")
def source(engine: NeuralEngine, astronaut_bgr: np.ndarray) -> SourceFace:
    return engine.prepare_source(astronaut_bgr)


def outside_mask(frame: np.ndarray, regions: list[tuple[int, int, int, int]]) -> np.ndarray:
    mask = np.ones(frame.shape[:2], bool)
    for x0, y0, x1, y1 in regions:
        mask[y0:y1, x0:x1] = False
    return mask


def face_box(face: Face) -> tuple[slice, slice]:
    """The central half of the detected box: surely inside the swapped face."""
    x1, y1, x2, y2 = face.bbox
    cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
    return slice(int(cy - h / 4), int(cy + h / 4)), slice(int(cx - w / 4), int(cx + w / 4))


def test_prepare_source(engine: NeuralEngine, source: SourceFace) -> None:
    assert source.engine == "neural" and source.faces_found == 1
    ident = source.payload
    assert isinstance(ident, NeuralIdentity)
    assert np.linalg.norm(ident.embedding) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(ident.latent, identity_latent(ident.embedding, engine.swapper.emap), atol=1e-6)
    thumb = cv2.imdecode(np.frombuffer(source.thumbnail_jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert source.thumbnail_jpeg[:2] == b"\xff\xd8" and max(thumb.shape[:2]) == 128


def test_different_faces_give_different_embeddings(
    engine: NeuralEngine, source: SourceFace, grace_bgr: np.ndarray
) -> None:
    other = engine.prepare_source(grace_bgr).payload.embedding
    assert float(other @ source.payload.embedding) < 0.999


def test_no_face_in_source(engine: NeuralEngine) -> None:
    with pytest.raises(NoFaceError) as exc:
        engine.prepare_source(np.full((200, 200, 3), 128, np.uint8))
    assert exc.value.code == "no_face" and "no face" in exc.value.message


def test_not_an_image(engine: NeuralEngine) -> None:
    with pytest.raises(BadImageError):
        engine.prepare_source(np.zeros((10, 10), np.uint8))


def test_without_source_the_frame_is_unchanged(engine: NeuralEngine, grace_bgr: np.ndarray) -> None:
    result = engine.open_stream().process(grace_bgr, None, SwapOptions())
    assert np.array_equal(result.frame, grace_bgr) and result.swapped == 0


def test_swap_changes_the_face_and_nothing_else(
    engine: NeuralEngine, source: SourceFace, grace_bgr: np.ndarray
) -> None:
    frame = grace_bgr.copy()
    result = engine.open_stream().process(frame, source, SwapOptions())
    assert np.array_equal(frame, grace_bgr), "the input frame must not be modified"
    assert result.swapped == 1 and len(result.faces) == 1
    out = result.frame
    assert out.shape == frame.shape and out.dtype == np.uint8
    face = result.faces[0]
    ys, xs = face_box(face)
    # the stand-in swapper inverts the crop, so the face region is the negative of the input
    inverted = 255 - frame[ys, xs].astype(int)
    assert np.abs(out[ys, xs].astype(int) - inverted).mean() < 10
    region = crop_region(estimate_arcface(face.kps, 128), 128, frame.shape)
    outside = outside_mask(frame, [region])
    assert outside.sum() > 0.5 * outside.size
    assert np.array_equal(out[outside], frame[outside])
    assert set(result.timings_ms) >= {"detect", "align", "swap", "enhance", "paste", "total"}
    assert result.timings_ms["total"] >= result.timings_ms["swap"] > 0


def test_many_faces_swaps_every_face(engine: NeuralEngine, source: SourceFace, two_faces: np.ndarray) -> None:
    stream = engine.open_stream()
    one = stream.process(two_faces, source, SwapOptions(many_faces=False))
    many = stream.process(two_faces, source, SwapOptions(many_faces=True))
    assert len(one.faces) == 2 and len(many.faces) == 2
    assert one.swapped == 1 and many.swapped == 2
    largest, smaller = one.faces
    assert largest.area >= smaller.area
    for face in (largest, smaller):
        ys, xs = face_box(face)
        assert np.abs(many.frame[ys, xs].astype(int) - two_faces[ys, xs].astype(int)).mean() > 30
    ys, xs = face_box(largest)
    assert np.abs(one.frame[ys, xs].astype(int) - two_faces[ys, xs].astype(int)).mean() > 30
    ys, xs = face_box(smaller)
    assert np.array_equal(one.frame[ys, xs], two_faces[ys, xs])


def test_faces_left_alone_are_reported_unswapped(
    engine: NeuralEngine, source: SourceFace, two_faces: np.ndarray
) -> None:
    stream = engine.open_stream()
    one = stream.process(two_faces, source, SwapOptions(many_faces=False), timestamp_s=0.0)
    many = stream.process(two_faces, source, SwapOptions(many_faces=True), timestamp_s=0.04)
    largest, smaller = one.faces
    assert largest.area >= smaller.area
    # One-face mode leaves the smaller face as it is: the caller must hide it.
    assert len(one.unswapped) == 1
    np.testing.assert_array_equal(one.unswapped[0].bbox, smaller.bbox)
    assert one.unswapped[0].bbox[0] > two_faces.shape[1] / 2  # the right-hand (Obama) face
    assert many.unswapped == ()


class _FixedDetector:
    def __init__(self, faces: list[Face]) -> None:
        self.faces = faces

    def detect(self, frame: np.ndarray) -> list[Face]:
        return list(self.faces)


def test_a_face_that_cannot_be_pasted_is_unswapped(
    engine: NeuralEngine, source: SourceFace, grace_bgr: np.ndarray
) -> None:
    real = engine.detector.detect(grace_bgr)[0]
    # Keypoints far outside the frame: the aligned crop maps back to no pixel of it.
    off = Face(bbox=real.bbox + 5000, score=0.9, kps=real.kps + 5000)
    stub = NeuralEngine(_FixedDetector([real, off]), engine.embedder, engine.swapper)
    result = stub.open_stream().process(grace_bgr, source, SwapOptions(many_faces=True))
    assert result.swapped == 1
    assert len(result.unswapped) == 1 and result.unswapped[0] is off
    ys, xs = face_box(real)
    assert np.abs(result.frame[ys, xs].astype(int) - grace_bgr[ys, xs].astype(int)).mean() > 30


def test_strength_changes_the_identity(
    retinaface_session: ort.InferenceSession, grace_bgr: np.ndarray, astronaut_bgr: np.ndarray
) -> None:
    # A swapper that paints a flat colour computed from the latent makes the identity visible.
    engine = build_engine(retinaface_session, effect="colour")
    source = engine.prepare_source(astronaut_bgr)
    stream = engine.open_stream()
    full = stream.process(grace_bgr, source, SwapOptions(strength=1.0))
    none = stream.process(grace_bgr, source, SwapOptions(strength=0.0))
    ys, xs = face_box(full.faces[0])
    c_full = np.median(full.frame[ys, xs].reshape(-1, 3), axis=0)
    c_none = np.median(none.frame[ys, xs].reshape(-1, 3), axis=0)

    def colour(latent: np.ndarray) -> np.ndarray:
        return (np.clip(0.5 + 0.5 * (latent @ colour_matrix())[0], 0, 1) * 255)[::-1]

    target_latent = engine.swapper.latent(engine.embedder.embed(grace_bgr, full.faces[0].kps))
    np.testing.assert_allclose(c_full, colour(source.payload.latent), atol=2)
    np.testing.assert_allclose(c_none, colour(target_latent), atol=2)
    assert np.abs(c_full - c_none).max() > 10


def test_enhancer_runs_only_when_asked(
    engine: NeuralEngine, source: SourceFace, grace_bgr: np.ndarray
) -> None:
    stream = engine.open_stream()
    plain = stream.process(grace_bgr, source, SwapOptions(enhance=False))
    enhanced = stream.process(grace_bgr, source, SwapOptions(enhance=True, enhance_blend=1.0))
    assert plain.timings_ms["enhance"] == 0.0 and enhanced.timings_ms["enhance"] > 0
    ys, xs = face_box(plain.faces[0])
    # the stand-in enhancer negates its input: the swapped (inverted) face turns back
    diff = np.abs(enhanced.frame[ys, xs].astype(int) - plain.frame[ys, xs].astype(int)).mean()
    assert diff > 30
    half = stream.process(grace_bgr, source, SwapOptions(enhance=True, enhance_blend=0.5))
    # a 50% blend of x and 255 - x is mid-grey
    assert np.abs(half.frame[ys, xs].astype(int) - 128).mean() < 12


def test_from_store_reads_emap_from_the_file(
    tmp_path: Path, model_store: ModelStore, astronaut_bgr: np.ndarray
) -> None:
    emap = make_emap(seed=11)
    models = {"w600k_r50": arcface_model(), "inswapper_128": inswapper_model(emap=emap)}
    real = {n: model_store.ensure(n) for n in ("retinaface_mnet025", "face_landmark")}
    store = TinyStore(tmp_path, models, real)
    engine = NeuralEngine.from_store(store, Settings())  # type: ignore[arg-type]
    np.testing.assert_array_equal(engine.swapper.emap, emap)
    assert engine.enhancer is None  # gfpgan not present: enhancement is off, not an error
    info = engine.describe()
    assert info["engine"] == "neural" and info["providers"]["swapper"] == ["CPUExecutionProvider"]
    src = engine.prepare_source(astronaut_bgr)
    # enhance asked for without an enhancer: the swap still happens
    result = engine.open_stream().process(astronaut_bgr, src, SwapOptions(enhance=True))
    assert result.swapped == 1
