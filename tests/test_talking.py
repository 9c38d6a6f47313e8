"""The benchmarks' cameras: the talking face (benchmarks/talking.py) really talks, as the face mesh
sees it, loops without a jump and leaves the rest of the picture alone; the capacity clients build
the loop their camera names and refuse a name they do not know."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from swaprtc.benchmarks.capacity import CapacityPlan, camera_picture, run_capacity
from swaprtc.benchmarks.capacity_client import CAMERAS, camera_loop
from swaprtc.benchmarks.talking import LOOP_FRAMES, openings, talking_frames
from swaprtc.embedded import mesh as m
from swaprtc.embedded.bench import live_frames
from swaprtc.embedded.engine import EmbeddedEngine
from swaprtc.settings import Settings

if TYPE_CHECKING:
    from swaprtc.models.store import ModelStore

REPO_DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="module")
def engine(model_store: ModelStore, face_landmark_path: Path) -> EmbeddedEngine:
    return EmbeddedEngine.from_paths(model_store.ensure("retinaface_mnet025"), face_landmark_path)


@pytest.fixture(scope="module")
def picture(obama_bgr: np.ndarray) -> np.ndarray:
    """The capacity clients' 480p camera picture."""
    return camera_picture(obama_bgr, (640, 480))


@pytest.fixture(scope="module")
def talking(engine: EmbeddedEngine, picture: np.ndarray) -> list[np.ndarray]:
    return talking_frames(picture, engine.detect(picture)[0].kps)


def _mesh(engine: EmbeddedEngine, frame: np.ndarray) -> np.ndarray:
    """The face mesh of a still frame: detector ROI, then refined on the mesh's own ROI."""
    mesh, _ = engine.source_mesh(frame, engine.detect(frame)[0])
    return mesh[:, :2]


def _lip_gap(mesh: np.ndarray) -> float:
    top, bottom = m.LIP_MIDS
    return float(np.linalg.norm(mesh[top] - mesh[bottom]))


def _brow_height(mesh: np.ndarray) -> float:
    """How far the brows are above the eyes (pixels)."""
    brows = mesh[np.r_[m.LEFT_BROW, m.RIGHT_BROW], 1].mean()
    return float(mesh[np.r_[m.LEFT_EYE, m.RIGHT_EYE], 1].mean() - brows)


def test_the_talking_face_opens_its_mouth_and_lifts_its_brows(
    engine: EmbeddedEngine, talking: list[np.ndarray]
) -> None:
    """At 480p the mesh's inner lips part by several pixels at the loop's widest opening (the
    photo's own mouth is a little open already: ~26 px gap), and close again by the loop's end."""
    mouth, brows = openings()
    widest, highest = int(np.argmax(mouth)), int(np.argmax(brows))
    first, wide, last = (_mesh(engine, talking[i]) for i in (0, widest, LOOP_FRAMES - 1))
    assert _lip_gap(wide) - _lip_gap(first) > 5.0, (_lip_gap(first), _lip_gap(wide))
    assert abs(_lip_gap(last) - _lip_gap(first)) < 2.0
    assert _brow_height(_mesh(engine, talking[highest])) - _brow_height(first) > 1.0


def test_the_talking_loop_joins_without_a_jump(talking: list[np.ndarray]) -> None:
    """Replayed in a loop, frame 59 -> 0 changes no more than any step inside the loop."""
    frames = np.stack(talking).astype(np.int16)
    steps = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))
    join = float(np.abs(frames[0] - frames[-1]).mean())
    assert steps.max() > 0.3  # the face does move from frame to frame
    assert join <= steps.max() and join < 0.5, (join, steps.max())


def test_the_talking_face_leaves_the_background_alone(
    engine: EmbeddedEngine, picture: np.ndarray, talking: list[np.ndarray]
) -> None:
    """Pixels more than a face width beside the face are the picture's own in every frame."""
    x1, _, x2, _ = engine.detect(picture)[0].bbox
    width = x2 - x1
    left, right = max(0, int(x1 - width)), min(picture.shape[1], int(np.ceil(x2 + width)))
    assert left > 0 and right < picture.shape[1]  # something is left to compare at 480p
    for frame in talking:
        assert np.array_equal(frame[:, :left], picture[:, :left])
        assert np.array_equal(frame[:, right:], picture[:, right:])
    assert not np.array_equal(talking[0], talking[LOOP_FRAMES // 4])


def test_a_client_builds_the_loop_its_camera_names(obama_bgr: np.ndarray) -> None:
    image = camera_picture(obama_bgr, (320, 240))
    kps = np.array([[150, 80], [190, 80], [170, 100], [155, 120], [185, 120]], np.float32)
    still = camera_loop("still", image)
    assert len(still) == 30 and all(f is image for f in still)
    drift = camera_loop("drift", image)
    assert len(drift) == LOOP_FRAMES
    assert all(np.array_equal(a, b) for a, b in zip(drift, live_frames(image, 60, (320, 240)), strict=True))
    talk = camera_loop("talking", image, kps)
    assert len(talk) == LOOP_FRAMES
    assert all(np.array_equal(a, b) for a, b in zip(talk, talking_frames(image, kps), strict=True))
    assert set(CAMERAS) == {"still", "drift", "talking"}


def test_a_camera_name_the_clients_do_not_know_is_refused(obama_bgr: np.ndarray) -> None:
    image = camera_picture(obama_bgr, (320, 240))
    with pytest.raises(ValueError, match=r"unknown camera\(s\) \['wobble'\]; choose from \['still'"):
        camera_loop("wobble", image)
    with pytest.raises(ValueError, match="five key points"):
        camera_loop("talking", image)  # the parent must find the face first
    # The capacity suite refuses it before it starts any server.
    plan = CapacityPlan(workers=["1"], resolutions=["480p"], cameras=("still", "wobble"))
    with pytest.raises(ValueError, match="wobble"):
        run_capacity(plan, Settings(), REPO_DATA)


def test_capacity_runs_each_camera_as_its_own_ramps(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--camera still,talking``: each worker count and resolution ramps every camera, one after
    the other, and the summary has a row per workers × resolution × camera (no server here: the
    ramp itself is replaced)."""
    from swaprtc.benchmarks import capacity

    async def fake_ramp(plan: CapacityPlan, settings: Settings, case: Any, *rest: Any) -> dict[str, Any]:
        row = {"workers": case.workers, "resolution": case.resolution, "camera": case.camera}
        return row | {"max_sessions": 1, "peak_aggregate_fps": 30.0, "peak_at_sessions": 1, "at_max": None}

    monkeypatch.setattr(capacity, "ramp", fake_ramp)
    plan = CapacityPlan(workers=["1", "2"], resolutions=["480p"], cameras=("still", "talking"))
    report = run_capacity(plan, Settings(), REPO_DATA)
    assert report["cameras"] == ["still", "talking"]
    assert [(r["workers"], r["camera"]) for r in report["summary"]] == [
        ("1", "still"),
        ("1", "talking"),
        ("2", "still"),
        ("2", "talking"),
    ]
    assert CapacityPlan(workers=["1"], resolutions=["480p"]).cameras == ("still",)
