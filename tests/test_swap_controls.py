"""The neural engine's swap controls on real photos, with the real RetinaFace detector and tiny
stand-ins with the real I/O contracts: the mouth mask keeps the target's mouth, colour correction
takes the target's colour, the enhancer can run every Nth frame and reuse its last face between;
the DataChannel accepts the controls and /api/info lists them only for the engine that has them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest
from swaprtc.pipeline.color import face_mask, match_color
from swaprtc.pipeline.detector import RetinaFaceDetector
from swaprtc.pipeline.embedder import ArcFaceEmbedder
from swaprtc.pipeline.enhancer import GfpganEnhancer
from swaprtc.pipeline.mouth_mask import mouth_mask
from swaprtc.pipeline.neural import NeuralEngine
from swaprtc.pipeline.swapper import InSwapper
from swaprtc.rtc.control import handle_message
from swaprtc.types import Face, SourceFace, SwapOptions

from tests.tiny_models import arcface_model, gfpgan_model, inswapper_model, make_emap, session

if TYPE_CHECKING:
    import onnxruntime as ort


class CountingEnhancer(GfpganEnhancer):
    calls = 0

    def restore_many(self, crops: list[np.ndarray]) -> list[np.ndarray]:
        self.calls += 1
        return super().restore_many(crops)


def build(retinaface_session: ort.InferenceSession, effect: str) -> NeuralEngine:
    emap = make_emap()
    return NeuralEngine(
        RetinaFaceDetector(retinaface_session),
        ArcFaceEmbedder(session(arcface_model())),
        InSwapper(session(inswapper_model(effect, emap=emap)), emap),
        CountingEnhancer(session(gfpgan_model())),
    )


@pytest.fixture(scope="module")
def inverting(retinaface_session: ort.InferenceSession) -> NeuralEngine:
    return build(retinaface_session, "invert")  # swapped face = 255 - target: every change shows


def face_of(engine: NeuralEngine, image: np.ndarray) -> Face:
    (face,) = engine.detect(image)
    return face


def mouth_patch(face: Face) -> tuple[slice, slice]:
    """A few pixels around the middle of the mouth (between the corners, a little below)."""
    (lx, ly), (rx, ry) = face.kps[3], face.kps[4]
    cx, cy = int((lx + rx) / 2), int((ly + ry) / 2 + 0.1 * (rx - lx))
    return slice(cy - 2, cy + 3), slice(cx - 3, cx + 4)


def cheek_patch(face: Face) -> tuple[slice, slice]:
    """Between the left eye and the nose: swapped whatever the mouth mask does."""
    x, y = ((face.kps[0] + face.kps[2]) / 2).astype(int)
    return slice(y - 2, y + 3), slice(x - 2, x + 3)


def diff(a: np.ndarray, b: np.ndarray, where: tuple[slice, slice]) -> float:
    return float(np.abs(a[where].astype(np.int16) - b[where].astype(np.int16)).mean())


def test_mouth_mask_keeps_the_targets_mouth(
    inverting: NeuralEngine, grace_bgr: np.ndarray, astronaut_bgr: np.ndarray
) -> None:
    source = inverting.prepare_source(astronaut_bgr)
    face = face_of(inverting, grace_bgr)
    stream = inverting.open_stream()
    plain = stream.process(grace_bgr, source, SwapOptions()).frame
    masked = stream.process(grace_bgr, source, SwapOptions(mouth_mask=True, mouth_mask_blur=0.3)).frame
    mouth, cheek = mouth_patch(face), cheek_patch(face)
    assert diff(plain, grace_bgr, mouth) > 40  # the swap changed the mouth...
    assert diff(masked, grace_bgr, mouth) < 3  # ...the mask gives the target's own mouth back
    assert diff(masked, grace_bgr, cheek) > 40 and diff(masked, plain, cheek) < 2  # the rest is swapped


def test_mouth_mask_padding_and_blur() -> None:
    corners = np.array([[44.0, 92.0], [84.0, 92.0]])
    tight, wide = mouth_mask(corners, 128, 0.0, 0.0), mouth_mask(corners, 128, 1.0, 0.0)
    assert wide.sum() > 2.5 * tight.sum() > 0 and float(tight[95, 64]) == 1.0 and float(tight[20, 64]) == 0.0
    hard, soft = mouth_mask(corners, 128, 0.1, 0.0), mouth_mask(corners, 128, 0.1, 1.0)
    assert ((soft > 0.05) & (soft < 0.95)).sum() > 4 * ((hard > 0.05) & (hard < 0.95)).sum()
    tilted = mouth_mask(np.array([[50.0, 80.0], [80.0, 110.0]]), 128, 0.0, 0.0)
    assert float(tilted[97, 63]) == 1.0 and float(tilted[80, 80]) == 0.0  # follows the mouth's angle


def test_color_correction_takes_the_targets_colour(
    retinaface_session: ort.InferenceSession, grace_bgr: np.ndarray, astronaut_bgr: np.ndarray
) -> None:
    engine = build(retinaface_session, "colour")  # the swapped face is one flat, unnatural colour
    source = engine.prepare_source(astronaut_bgr)
    face = face_of(engine, grace_bgr)
    stream = engine.open_stream()
    x1, y1, x2, y2 = face.bbox.astype(int)
    h, w = y2 - y1, x2 - x1
    centre = (slice(y1 + h // 3, y2 - h // 4), slice(x1 + w // 4, x2 - w // 4))

    def mean(image: np.ndarray) -> np.ndarray:
        return image[centre].reshape(-1, 3).mean(axis=0)

    plain = stream.process(grace_bgr, source, SwapOptions()).frame
    corrected = stream.process(grace_bgr, source, SwapOptions(color_correction=True)).frame
    target = mean(grace_bgr)
    # Statistics come from the whole face ellipse (hair line, eyes, shadows), so the centre of the
    # face comes out a little darker than the target's centre, but nowhere near the swap's colour.
    off_plain, off_corrected = (float(np.linalg.norm(mean(x) - target)) for x in (plain, corrected))
    assert off_plain > 100 and off_corrected < 30
    assert diff(corrected, plain, centre) > 20


def test_match_color_is_a_pure_function(grace_bgr: np.ndarray, astronaut_bgr: np.ndarray) -> None:
    a, b = grace_bgr[100:228, 180:308].copy(), astronaut_bgr[50:178, 160:288].copy()
    mask = face_mask(128)
    out = match_color(a, b)
    assert out.shape == a.shape and out.dtype == np.uint8
    assert np.array_equal(a, grace_bgr[100:228, 180:308])  # inputs untouched
    inside = mask > 0
    assert np.abs(out[inside].mean(axis=0) - b[inside].mean(axis=0)).max() < 3
    assert np.array_equal(match_color(b, b), match_color(b, b))


def test_enhancer_every_nth_frame_reuses_the_last_face(
    inverting: NeuralEngine, grace_bgr: np.ndarray, astronaut_bgr: np.ndarray
) -> None:
    enhancer = inverting.enhancer
    assert isinstance(enhancer, CountingEnhancer)
    source: SourceFace = inverting.prepare_source(astronaut_bgr)
    stream = inverting.open_stream()
    cheek = cheek_patch(face_of(inverting, grace_bgr))
    plain = stream.process(grace_bgr, source, SwapOptions()).frame
    before = enhancer.calls
    every3 = SwapOptions(enhance=True, enhance_blend=1.0, enhance_every=3)
    frames = [stream.process(grace_bgr, source, every3).frame for _ in range(6)]
    assert enhancer.calls - before == 2  # frames 1 and 4
    for frame in frames:  # every frame shows the enhanced face, also those between runs
        assert diff(frame, plain, cheek) > 40 and diff(frame, frames[0], cheek) < 2
    before = enhancer.calls
    for _ in range(3):
        stream.process(grace_bgr, source, SwapOptions(enhance=True, enhance_every=1))
    assert enhancer.calls - before == 3


def test_controls_over_the_data_channel_and_in_info(inverting: NeuralEngine) -> None:
    result = handle_message(
        '{"type": "settings", "mouth_mask": true, "mouth_mask_blur": 0.5, "mouth_mask_padding": 0.2,'
        ' "color_correction": true, "enhance": true, "enhance_blend": 0.6, "enhance_every": 4}',
        SwapOptions(),
        False,
    )
    assert result.replies == ()
    assert result.options == SwapOptions(
        mouth_mask=True,
        mouth_mask_blur=0.5,
        mouth_mask_padding=0.2,
        color_correction=True,
        enhance=True,
        enhance_blend=0.6,
        enhance_every=4,
    )
    bad = handle_message(
        '{"type": "settings", "mouth_mask": 1, "mouth_mask_blur": 2, "enhance_every": 0,'
        ' "color_correction": true}',
        SwapOptions(),
        False,
    )
    assert bad.replies[0]["code"] == "bad_settings" and bad.options == SwapOptions(color_correction=True)
    for key in ("mouth_mask", "enhance_every", "mouth_mask_blur"):
        assert key in bad.replies[0]["message"]
    controls = inverting.describe()["controls"]
    assert isinstance(controls, list)
    assert {"mouth_mask", "mouth_mask_blur", "mouth_mask_padding", "color_correction", "enhance"} <= set(
        controls
    )
    assert "enhance_every" in controls and "enhance_blend" in controls
