"""Artifacts the embedded swap must not make, on real photos (issue 10 §6): blown highlights,
dark stretched triangles from a turned source, colour on a greyscale target, a visible seam,
flicker on a still face. Each compares the output with what the photos themselves hold."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest
from swaprtc.embedded import mesh as m
from swaprtc.embedded.blend import LEFT_BROW, RIGHT_BROW
from swaprtc.embedded.engine import EmbeddedEngine
from swaprtc.settings import Settings
from swaprtc.types import SwapOptions

from tests.conftest import load_bgr

if TYPE_CHECKING:
    from swaprtc.models.store import ModelStore

HIGHLIGHT_MARGIN = 12.0  # grey levels above the brighter photo's brightest skin
DARK_MARGIN = 15.0  # grey levels below the darker of the frontal swap's and the target's 1st percentile
SEAM_RATIO = 1.35  # boundary gradient vs the target's own at the same place
FLICKER_RATIO = 1.25  # frame-to-frame change on the face vs the input's own (sensor noise)


@pytest.fixture(scope="module")
def engine(model_store: ModelStore) -> EmbeddedEngine:
    return EmbeddedEngine.from_store(model_store, Settings())


def _fill(shape: tuple[int, ...], polygon: np.ndarray) -> np.ndarray:
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 1)
    return mask.astype(bool)


def _skin(shape: tuple[int, ...], mesh: np.ndarray) -> np.ndarray:
    """Inner face without eyes, brows and mouth."""
    centre = mesh[m.FACE_OVAL].mean(axis=0)
    skin = _fill(shape, centre + (m.blend_outline(mesh) - centre) * 0.85)
    rings = ((m.LEFT_EYE, 1.8), (m.RIGHT_EYE, 1.8), (m.OUTER_LIPS, 1.3), (LEFT_BROW, 1.4), (RIGHT_BROW, 1.4))
    for ring, grow in rings:
        c = mesh[ring].mean(axis=0)
        skin &= ~_fill(shape, c + (mesh[ring] - c) * grow)
    return skin


def _luma(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)


def _mesh(engine: EmbeddedEngine, image: np.ndarray) -> np.ndarray:
    faces = engine.open_stream().process(image, None, SwapOptions()).faces
    assert faces and faces[0].mesh is not None
    return faces[0].mesh


# Every photo once as source and as target; biden -> obama is where the old 4x gain blew out.
PAIRS = [
    ("biden.jpg", "obama.jpg"),
    ("obama.jpg", "astronaut.png"),
    ("astronaut.png", "grace_hopper.jpg"),
    ("grace_hopper.jpg", "biden.jpg"),
    ("astronaut.png", "biden.jpg"),
    ("obama.jpg", "grace_hopper.jpg"),
]


@pytest.mark.parametrize(("source_name", "target_name"), PAIRS)
def test_no_face_pixel_brighter_than_both_photos_brightest_skin(
    engine: EmbeddedEngine, source_name: str, target_name: str
) -> None:
    src_img, tgt_img = load_bgr(source_name), load_bgr(target_name)
    brightest = max(
        float(_luma(src_img)[_skin(src_img.shape, _mesh(engine, src_img))].max()),
        float(_luma(tgt_img)[_skin(tgt_img.shape, _mesh(engine, tgt_img))].max()),
    )
    result = engine.open_stream().process(tgt_img, engine.prepare_source(src_img), SwapOptions())
    face = _skin(tgt_img.shape, result.faces[0].mesh)
    assert result.swapped == 1
    assert float(_luma(result.frame)[face].max()) <= brightest + HIGHLIGHT_MARGIN


@pytest.mark.parametrize("target_name", ["astronaut.png", "grace_hopper.jpg", "biden.jpg"])
def test_turned_source_leaves_no_dark_triangles(engine: EmbeddedEngine, target_name: str) -> None:
    # Obama turned to his left with his mouth open: part of his face is hidden from the camera.
    # Swapped in, his face must not be darker than his frontal portrait swapped in the same way
    # (the same person's features and skin), nor than the target's own darkest skin.
    target = load_bgr(target_name)
    turned = engine.open_stream().process(
        target, engine.prepare_source(load_bgr("obama_turned.jpg")), SwapOptions()
    )
    frontal = engine.open_stream().process(
        target, engine.prepare_source(load_bgr("obama.jpg")), SwapOptions()
    )
    face = _skin(target.shape, turned.faces[0].mesh)
    darkest_turned = float(np.percentile(_luma(turned.frame)[face], 1))
    darkest_frontal = float(np.percentile(_luma(frontal.frame)[face], 1))
    darkest_target = float(np.percentile(_luma(target)[face], 1))
    assert darkest_turned >= min(darkest_frontal, darkest_target) - DARK_MARGIN, (
        darkest_turned,
        darkest_frontal,
        darkest_target,
    )


def test_turned_source_is_mirrored_and_warned_about(engine: EmbeddedEngine) -> None:
    turned = engine.prepare_source(load_bgr("obama_turned.jpg"))
    frontal = engine.prepare_source(load_bgr("obama.jpg"))
    assert turned.payload.mirrored.sum() > 20 * max(int(frontal.payload.mirrored.sum()), 1)
    assert [code for code, _ in turned.warnings] == ["turned"]
    assert "%" in turned.warnings[0][1]
    assert frontal.warnings == ()


@pytest.mark.parametrize("target_name", ["obama.jpg", "grace_hopper.jpg"])
def test_greyscale_target_stays_greyscale(engine: EmbeddedEngine, target_name: str) -> None:
    grey = cv2.cvtColor(cv2.cvtColor(load_bgr(target_name), cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    result = engine.open_stream().process(
        grey, engine.prepare_source(load_bgr("astronaut.png")), SwapOptions()
    )
    assert result.swapped == 1
    out = result.frame.astype(np.int16)
    changed = np.abs(out - grey).max(axis=2) > 10
    assert changed.sum() > 2000  # the face really was swapped
    chroma = np.maximum(np.abs(out[..., 0] - out[..., 1]), np.abs(out[..., 1] - out[..., 2]))
    assert int(chroma.max()) <= 1


def _band(shape: tuple[int, ...], outline: np.ndarray, width: int) -> np.ndarray:
    ring = np.zeros(shape[:2], np.uint8)
    cv2.polylines(ring, [np.round(outline).astype(np.int32)], True, 1, thickness=width)
    return ring.astype(bool)


@pytest.mark.parametrize(
    ("source_name", "target_name"), [("obama.jpg", "astronaut.png"), ("astronaut.png", "biden.jpg")]
)
def test_no_seam_along_the_blend_boundary(engine: EmbeddedEngine, source_name: str, target_name: str) -> None:
    # Skin tones far apart: a hard paste would leave a ring of strong gradient at the edge.
    target = load_bgr(target_name)
    result = engine.open_stream().process(target, engine.prepare_source(load_bgr(source_name)), SwapOptions())
    mesh = result.faces[0].mesh
    size = float(max(np.ptp(mesh, axis=0)))
    outline = m.blend_outline(mesh)
    centre = mesh[m.FACE_OVAL].mean(axis=0)
    band = np.zeros(target.shape[:2], bool)
    for f in np.linspace(0.9, 1.0, 5):  # the edge region where the blend happens
        band |= _band(target.shape, centre + (outline - centre) * f, max(2, round(0.01 * size)))

    def gradient(image: np.ndarray) -> np.ndarray:
        g = cv2.GaussianBlur(_luma(image), (0, 0), 1.0)
        return np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1))

    g_out, g_tgt = gradient(result.frame), gradient(target)
    interior = _skin(target.shape, mesh)
    ratio = float(g_out[band].mean()) / float(g_tgt[band].mean())
    assert ratio < SEAM_RATIO, ratio
    # And the edge is no busier than the swapped face's own skin.
    assert float(g_out[band].mean()) < 2.0 * float(g_out[interior].mean())


def test_still_face_does_not_flicker(engine: EmbeddedEngine) -> None:
    # A still webcam face: the same picture with fresh sensor noise in every frame, 30 fps.
    base = cv2.resize(load_bgr("obama.jpg"), (480, 600))[60:540]
    rng = np.random.default_rng(0)
    source = engine.prepare_source(load_bgr("astronaut.png"))
    stream = engine.open_stream()
    frames, outs = [], []
    for i in range(30):
        noisy = np.clip(base + rng.normal(0, 2.0, base.shape), 0, 255).astype(np.uint8)
        result = stream.process(noisy, source, SwapOptions(), timestamp_s=i / 30)
        assert result.swapped == 1
        frames.append(noisy.astype(np.float32))
        outs.append(result.frame.astype(np.float32))
    face = _skin(base.shape, result.faces[0].mesh)

    # After the first half second (the tracker settles), compare consecutive frames on the face.
    def changes(seq: list[np.ndarray]) -> list[float]:
        return [float(np.abs(b - a)[face].mean()) for a, b in itertools.pairwise(seq[15:])]

    d_in, d_out = float(np.mean(changes(frames))), float(np.mean(changes(outs)))
    worst = max(changes(outs))
    assert d_out < FLICKER_RATIO * d_in, (d_out, d_in)
    assert worst < 2.0 * d_in


def test_hair_over_the_source_forehead_is_not_pasted(engine: EmbeddedEngine) -> None:
    # The astronaut's fringe covers her forehead; Obama's and Biden's foreheads are bare skin.
    fringe = engine.prepare_source(load_bgr("astronaut.png"))
    bare = engine.prepare_source(load_bgr("obama.jpg"))
    forehead = np.array([151, 9, 108, 337, 69, 299])  # mid-forehead points, above the brows
    assert fringe.payload.skin_weight[forehead].mean() < 0.5
    assert bare.payload.skin_weight[: m.NUM_POINTS].min() > 0.9
    target = load_bgr("biden.jpg")
    result = engine.open_stream().process(target, fringe, SwapOptions())
    mesh = result.faces[0].mesh
    size = float(max(np.ptp(mesh, axis=0)))
    x, y = np.round(mesh[151]).astype(int)
    r = max(3, round(0.03 * size))
    patch = (slice(y - r, y + r), slice(x - r, x + r))
    # Biden's own forehead stays there, not a band of brown hair.
    assert float(np.abs(result.frame[patch].astype(np.int16) - target[patch]).mean()) < 12.0
