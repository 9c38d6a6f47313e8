"""Embedded engine swaps on real faces: the face changes toward the source, the pose and the
target's own eyes and mouth stay, and nothing outside the face box is touched."""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest
from skimage.metrics import structural_similarity
from swaprtc.embedded import mesh as m
from swaprtc.embedded.engine import EmbeddedEngine, SourceTexture
from swaprtc.embedded.source import with_ring
from swaprtc.embedded.warp import face_grid, warp_texture
from swaprtc.errors import NoFaceError
from swaprtc.settings import Settings
from swaprtc.types import SourceFace, SwapOptions

if TYPE_CHECKING:
    from swaprtc.models.store import ModelStore

PAIRS = [
    ("astronaut_bgr", "grace_bgr"),
    ("grace_bgr", "obama_bgr"),
    ("obama_bgr", "astronaut_bgr"),
    ("astronaut_bgr", "obama_bgr"),
]


@pytest.fixture(scope="module")
def engine(model_store: ModelStore) -> EmbeddedEngine:
    return EmbeddedEngine.from_store(model_store, Settings())


def _source(engine: EmbeddedEngine, request: pytest.FixtureRequest, name: str) -> SourceFace:
    return engine.prepare_source(request.getfixturevalue(name))


def _fill(shape: tuple[int, ...], polygon: np.ndarray) -> np.ndarray:
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 1)
    return mask.astype(bool)


def _skin(shape: tuple[int, ...], mesh: np.ndarray) -> np.ndarray:
    """Inner face (well inside the oval), without eyes and mouth: where the swap is at full weight."""
    inner = mesh[m.FACE_OVAL].mean(axis=0) + (m.blend_outline(mesh) - mesh[m.FACE_OVAL].mean(axis=0)) * 0.8
    skin = _fill(shape, inner)
    for ring in (m.LEFT_EYE, m.RIGHT_EYE, m.INNER_LIPS):
        centre = mesh[ring].mean(axis=0)
        skin &= ~_fill(shape, centre + (mesh[ring] - centre) * 1.6)
    return skin


def test_prepare_source_builds_texture_mesh_and_thumbnail(
    engine: EmbeddedEngine, astronaut_bgr: np.ndarray
) -> None:
    src = engine.prepare_source(astronaut_bgr)
    payload = src.payload
    assert src.engine == "embedded" and src.faces_found == 1
    assert isinstance(payload, SourceTexture)
    assert payload.mesh.shape == (468 + 36, 2) and payload.triangles.shape[1] == 3  # mesh and its ring
    assert len(payload.triangles) > 800  # a dense triangulation over all 468 points
    h, w = payload.texture.shape[:2]
    assert max(h, w) <= 512
    # Texture levels down to the smallest face size, each half the last.
    assert len(payload.levels) >= 2 and payload.levels[1].shape[0] == payload.levels[0].shape[0] // 2
    face = payload.mesh[:468]
    assert (face >= -1).all() and (face[:, 0] <= w).all() and (face[:, 1] <= h).all()
    thumb = cv2.imdecode(np.frombuffer(src.thumbnail_jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert thumb is not None and max(thumb.shape[:2]) == 128
    # The source face box matches the detector's idea of where the astronaut's face is.
    assert 160 < src.face.bbox[0] < 200 and 250 < src.face.bbox[2] < 290


def test_prepare_source_without_a_face_raises(engine: EmbeddedEngine, astronaut_bgr: np.ndarray) -> None:
    flag_corner = np.ascontiguousarray(astronaut_bgr[300:512, 0:150])
    with pytest.raises(NoFaceError):
        engine.prepare_source(flag_corner)
    with pytest.raises(NoFaceError):
        engine.prepare_source(np.full((240, 320, 3), 127, np.uint8))


@pytest.mark.parametrize(("source_name", "target_name"), PAIRS)
def test_swap_moves_the_face_toward_the_source_and_keeps_the_pose(
    engine: EmbeddedEngine, request: pytest.FixtureRequest, source_name: str, target_name: str
) -> None:
    source = _source(engine, request, source_name)
    target = request.getfixturevalue(target_name)
    before = engine.open_stream().process(target, None, SwapOptions())
    # No change of shape here, so the output's landmarks can be compared with the target's.
    result = engine.open_stream().process(target, source, SwapOptions(shape=0.0))
    assert result.swapped == 1 and result.frame.shape == target.shape
    assert before.frame is target or np.array_equal(before.frame, target)
    mesh = result.faces[0].mesh
    assert mesh is not None
    size = float(max(np.ptp(mesh, axis=0)))

    # Nothing outside the face box changed, byte for byte.
    x0, y0 = np.floor(mesh[m.FACE_OVAL].min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(mesh[m.FACE_OVAL].max(axis=0)).astype(int) + 2
    outside = np.ones(target.shape[:2], bool)
    outside[max(y0, 0) : y1, max(x0, 0) : x1] = False
    assert np.array_equal(result.frame[outside], target[outside])

    # The face region did change, substantially.
    skin = _skin(target.shape, mesh)
    diff = np.abs(result.frame.astype(np.int16) - target.astype(np.int16)).sum(axis=2)
    assert diff[skin].mean() > 25

    # Pose kept: the mesh found on the output lines up with the target's own mesh.
    after = engine.open_stream().process(result.frame, None, SwapOptions())
    assert len(after.faces) == 1
    target_mesh = before.faces[0].mesh
    offset = np.linalg.norm(after.faces[0].mesh - target_mesh, axis=1).mean()
    assert offset < 0.03 * size, (offset, size)

    # Appearance moved toward the source: inside the skin region the output is structurally more
    # like the source texture warped onto the target's mesh than like the target itself.
    payload = source.payload
    grid = face_grid(mesh[m.FACE_OVAL], target.shape, 10_000)
    warped = warp_texture(payload.texture, payload.mesh, with_ring(mesh), payload.triangles, grid)
    box = (slice(grid.y0, grid.y1), slice(grid.x0, grid.x1))
    gray = [cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) for img in (result.frame[box], warped, target[box])]
    region = skin[box]
    _, to_source = structural_similarity(gray[0], gray[1], full=True, data_range=255)
    _, to_target = structural_similarity(gray[0], gray[2], full=True, data_range=255)
    s_source, s_target = to_source[region].mean(), to_target[region].mean()
    assert s_source > s_target + 0.2, (s_source, s_target)

    # Colour follows the target's skin: the skin region's mean chromaticity moved most of the way
    # to the target's from the raw warped source's, and its level is the target's within 15 % (the
    # light follows the target's at the scale of lighting; the relief's shading is the source's).
    out_mean = result.frame[box][region].mean(axis=0)
    tgt_mean = target[box][region].mean(axis=0)
    src_mean = warped[region].mean(axis=0)

    def chroma(bgr: np.ndarray) -> np.ndarray:
        return bgr / bgr.sum()

    moved = np.linalg.norm(chroma(out_mean) - chroma(tgt_mean))
    assert moved < 0.4 * np.linalg.norm(chroma(src_mean) - chroma(tgt_mean))
    assert abs(out_mean.sum() / tgt_mean.sum() - 1.0) < 0.15


def test_open_mouth_stays_the_targets_and_eyes_come_from_the_source(
    engine: EmbeddedEngine, astronaut_bgr: np.ndarray, obama_bgr: np.ndarray
) -> None:
    # Obama smiles with his teeth showing: the inner-lip polygon holds his own mouth interior.
    source = engine.prepare_source(astronaut_bgr)
    result = engine.open_stream().process(obama_bgr, source, SwapOptions(shape=0.0))
    mesh = result.faces[0].mesh
    diff = np.abs(result.frame.astype(np.int16) - obama_bgr.astype(np.int16)).max(axis=2)
    mouth = _fill(obama_bgr.shape, mesh[m.INNER_LIPS])
    assert mouth.sum() > 500  # the mouth really is open
    assert diff[mouth].mean() < 3.0 and np.percentile(diff[mouth], 90) <= 8
    # His eyes are open about as wide as the astronaut's: hers are shown, not his.
    for ring in (m.LEFT_EYE, m.RIGHT_EYE):
        eye = _fill(obama_bgr.shape, mesh[ring])
        assert eye.sum() > 50
        assert diff[eye].mean() > 15


def test_mouth_mask_keeps_the_targets_mouth(
    engine: EmbeddedEngine, grace_bgr: np.ndarray, astronaut_bgr: np.ndarray
) -> None:
    # Grace's mouth is closed: without the mouth mask her lips are replaced by the astronaut's,
    # with it her own mouth region stays.
    source = engine.prepare_source(astronaut_bgr)
    plain = engine.open_stream().process(grace_bgr, source, SwapOptions(shape=0.0))
    masked = engine.open_stream().process(
        grace_bgr, source, SwapOptions(shape=0.0, mouth_mask=True, mouth_mask_padding=0.3)
    )
    mesh = plain.faces[0].mesh
    lips = _fill(grace_bgr.shape, mesh[m.OUTER_LIPS])
    d_plain = np.abs(plain.frame.astype(np.int16) - grace_bgr).max(axis=2)
    d_masked = np.abs(masked.frame.astype(np.int16) - grace_bgr).max(axis=2)
    centre = mesh[m.OUTER_LIPS].mean(axis=0)
    middle = _fill(grace_bgr.shape, centre + (mesh[m.OUTER_LIPS] - centre) * 0.6)
    assert lips.sum() > 200
    assert d_plain[lips].mean() > 12
    assert d_masked[middle].mean() < 0.3 * d_plain[middle].mean()
    assert d_masked[lips].mean() < 0.8 * d_plain[lips].mean()


def test_strength_scales_the_change(
    engine: EmbeddedEngine, grace_bgr: np.ndarray, obama_bgr: np.ndarray
) -> None:
    source = engine.prepare_source(grace_bgr)
    full = engine.open_stream().process(obama_bgr, source, SwapOptions(strength=1.0)).frame
    half = engine.open_stream().process(obama_bgr, source, SwapOptions(strength=0.5)).frame
    none = engine.open_stream().process(obama_bgr, source, SwapOptions(strength=0.0))
    assert np.array_equal(none.frame, obama_bgr) and none.swapped == 1  # done, by leaving it as is
    d_full = np.abs(full.astype(np.int16) - obama_bgr).sum()
    d_half = np.abs(half.astype(np.int16) - obama_bgr).sum()
    assert 0.35 * d_full < d_half < 0.65 * d_full


def test_many_faces_swaps_every_face_only_when_asked(
    engine: EmbeddedEngine, astronaut_bgr: np.ndarray, grace_bgr: np.ndarray, obama_bgr: np.ndarray
) -> None:
    left = cv2.resize(grace_bgr, (400, 470))[:, 40:360]
    right = cv2.resize(obama_bgr, (320, 400))[:, :320]
    canvas = np.full((480, 640, 3), 90, np.uint8)
    canvas[:470, :320] = left
    canvas[40:440, 320:] = right
    source = engine.prepare_source(astronaut_bgr)
    one_stream = engine.open_stream()
    one = one_stream.process(canvas, source, SwapOptions(many_faces=False))
    both = engine.open_stream().process(canvas, source, SwapOptions(many_faces=True))
    assert one.swapped == 1 and len(one.faces) == 2
    assert both.swapped == 2 and len(both.faces) == 2 and both.unswapped == ()
    # The face left alone (Obama, on the right) is reported so the caller can hide it, and keeps
    # being reported on the frames between scheduled detector runs.
    for result in (one, one_stream.process(canvas, source, SwapOptions(many_faces=False))):
        assert len(result.unswapped) == 1
        x1, y1, x2, y2 = result.unswapped[0].bbox
        assert x1 > 320 and (x1 + x2) / 2 > 400 and y2 > y1
    changed = np.abs(both.frame.astype(np.int16) - canvas).sum(axis=2) > 30
    assert changed[:, :320].sum() > 2000 and changed[:, 320:].sum() > 2000
    # With one face, only the largest (Grace, on the left) is swapped.
    changed_one = np.abs(one.frame.astype(np.int16) - canvas).sum(axis=2) > 30
    assert changed_one[:, :320].sum() > 2000 and changed_one[:, 320:].sum() == 0


def test_a_source_from_another_engine_is_refused(
    engine: EmbeddedEngine, grace_bgr: np.ndarray, obama_bgr: np.ndarray
) -> None:
    own = engine.prepare_source(grace_bgr)
    foreign = SourceFace(engine="neural", face=own.face, faces_found=1, thumbnail_jpeg=b"", payload=object())
    with pytest.raises(ValueError, match="neural"):
        engine.open_stream().process(obama_bgr, foreign, SwapOptions())


def test_timings_and_describe(engine: EmbeddedEngine, grace_bgr: np.ndarray, obama_bgr: np.ndarray) -> None:
    source = engine.prepare_source(grace_bgr)
    result = engine.open_stream().process(obama_bgr, source, SwapOptions(enhance=True))
    assert set(result.timings_ms) >= {"detect", "landmarks", "warp", "color", "blend", "total"}
    assert all(v >= 0 for v in result.timings_ms.values())
    assert result.timings_ms["total"] >= result.timings_ms["warp"] > 0
    info = engine.describe()
    assert info["engine"] == "embedded" and info["enhancer"] is False
    assert info["providers"]["landmarks"] == ["CPUExecutionProvider"]


def test_face_cut_by_the_frame_edge_and_large_uploads(
    engine: EmbeddedEngine, astronaut_bgr: np.ndarray, obama_bgr: np.ndarray
) -> None:
    big = cv2.resize(astronaut_bgr, (2048, 2048), interpolation=cv2.INTER_CUBIC)
    source = engine.prepare_source(big)
    # The face's own resolution (~480 px here), up to 512 px.
    assert 400 < max(source.payload.texture.shape[:2]) <= 512
    assert 640 < source.face.bbox[0] < 800  # found at full-image scale
    # Obama's face (x 188..300 at this size) with a fifth of it outside the frame.
    small = cv2.resize(obama_bgr, (455, 568))
    frame = np.ascontiguousarray(small[60:540, 210:455])
    result = engine.open_stream().process(frame, source, SwapOptions())
    assert result.frame.shape == frame.shape and result.swapped == 1
    assert result.faces[0].mesh[:, 0].min() < 0  # the mesh runs past the edge; the warp clips it
    changed = np.abs(result.frame.astype(np.int16) - frame).sum(axis=2) > 30
    assert changed[:, :40].sum() > 300  # swapped right up to the edge


def test_lighting_follows_the_target(
    engine: EmbeddedEngine, astronaut_bgr: np.ndarray, obama_bgr: np.ndarray
) -> None:
    # Light Obama from his left only: a ramp from 35% to 100% brightness across the face. The
    # astronaut's evenly lit face pasted in must pick up the same shading.
    face = engine.open_stream().process(obama_bgr, None, SwapOptions()).faces[0]
    x0 = float(face.bbox[0])
    ramp = np.clip(0.35 + 0.65 * (np.arange(obama_bgr.shape[1]) - x0) / face.width, 0.35, 1.0)
    shaded = np.clip(obama_bgr * ramp[None, :, None], 0, 255).astype(np.uint8)
    source = engine.prepare_source(astronaut_bgr)
    result = engine.open_stream().process(shaded, source, SwapOptions())
    mesh = result.faces[0].mesh

    def cheek(image: np.ndarray, point: int) -> float:
        x, y = np.round(mesh[point]).astype(int)
        return float(image[y - 8 : y + 8, x - 8 : x + 8].astype(np.float32).mean())

    left, right = 205, 425  # cheek points of the mesh, image left and right
    target_ratio = cheek(shaded, left) / cheek(shaded, right)
    out_ratio = cheek(result.frame, left) / cheek(result.frame, right)
    assert target_ratio < 0.75  # the shading is real
    # The evenly lit source alone reads ~1.0 here. The whole inner face is the source's now, so
    # the patches also hold her features rather than Obama's: a looser bound than the light alone.
    assert abs(out_ratio - target_ratio) < 0.15, (out_ratio, target_ratio)


def test_keep_weights_follow_openness(engine: EmbeddedEngine, grace_bgr: np.ndarray) -> None:
    # Grace's real mesh, with her upper lids and lower lip moved: the target's own eye interior is
    # kept only while an eye closes or opens far wider than the source's, her mouth interior only
    # while it opens wider than the source's; every weight ramps, none is a fixed hole.
    from swaprtc.embedded.blend import keep_weights

    mesh = engine.open_stream().process(grace_bgr, None, SwapOptions()).faces[0].mesh
    eyes = m.eye_openness(mesh)

    def lids(factor: float) -> np.ndarray:
        moved = mesh.copy()
        for upper, lower in (m.LEFT_LIDS, m.RIGHT_LIDS):
            moved[upper] = mesh[lower] + (mesh[upper] - mesh[lower]) * factor
        return moved

    same = keep_weights(mesh, eyes, m.mouth_openness(mesh))
    assert (same.left_eye, same.right_eye, same.mouth) == (0.0, 0.0, 0.0)
    closing = keep_weights(lids(0.45), eyes)
    assert 0.0 < closing.left_eye < 1.0 and 0.0 < closing.right_eye < 1.0  # blended, not switched
    assert keep_weights(lids(0.1), eyes).left_eye == 1.0
    assert keep_weights(lids(2.5), eyes).right_eye == 1.0  # far more open than the source's
    opened = mesh.copy()
    opened[m.LIP_MIDS[1]] += np.array([0.0, 0.3]) * np.linalg.norm(mesh[m.MOUTH_LEFT] - mesh[m.MOUTH_RIGHT])
    assert keep_weights(opened, eyes, source_mouth=0.02).mouth == 1.0
    assert keep_weights(opened, eyes, source_mouth=0.35).mouth == 0.0  # the source's teeth fit
    assert keep_weights(mesh, eyes, mouth_mask=True).mouth == 1.0


def test_a_fringe_over_the_targets_forehead_stays(
    engine: EmbeddedEngine, astronaut_bgr: np.ndarray, obama_bgr: np.ndarray
) -> None:
    # The whole forehead is swapped, but what covers the target's (hair, a hat) is not skin: a
    # dark fringe painted across the astronaut's forehead must still be there after the swap.
    mesh = engine.open_stream().process(astronaut_bgr, None, SwapOptions()).faces[0].mesh
    assert mesh is not None
    brows = mesh[np.concatenate([m.LEFT_BROW, m.RIGHT_BROW])]
    top = float(mesh[m.FACE_OVAL][:, 1].min())
    x0, x1 = float(brows[:, 0].min()), float(brows[:, 0].max())
    y0, y1 = top, top + 0.6 * (float(brows[:, 1].min()) - top)
    target = astronaut_bgr.copy()
    fringe = (slice(round(y0), round(y1)), slice(round(x0), round(x1)))
    target[fringe] = (30, 45, 60)
    result = engine.open_stream().process(target, engine.prepare_source(obama_bgr), SwapOptions())
    assert result.swapped == 1
    # The fringe's middle (its edge blends): within a few grey levels of the painted colour.
    inner = (
        slice(round(y0 + 0.2 * (y1 - y0)), round(y1 - 0.2 * (y1 - y0))),
        slice(round(x0 + 0.2 * (x1 - x0)), round(x1 - 0.2 * (x1 - x0))),
    )
    change = np.abs(result.frame[inner].astype(np.int16) - target[inner]).mean()
    assert change < 4.0, change
    # Below it the forehead is the source's.
    below = (slice(round(y1 + 2), round(float(brows[:, 1].min()) - 2)), inner[1])
    assert np.abs(result.frame[below].astype(np.int16) - target[below]).mean() > 8.0
