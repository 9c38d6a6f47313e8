"""Choosing source faces through real HTTP: every face of a photo listed with a thumbnail and
warnings, picking one at upload or later without re-uploading, named sources (at most 8), and
the quality warnings themselves (turned, occluded, small, blurred) on real photos."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import aiohttp
import cv2
import numpy as np
import pytest
from swaprtc.face_quality import face_warnings, turn_ratio
from swaprtc.pipeline.detector import RetinaFaceDetector
from swaprtc.rtc.app import SESSIONS, create_app
from swaprtc.rtc.sources import MAX_SOURCES
from swaprtc.settings import Settings
from swaprtc.types import Face

from tests.conftest import load_bgr
from tests.engine_doubles import PaintEngine
from tests.rtc_client import serve_in_process

if TYPE_CHECKING:
    import onnxruntime as ort
    from swaprtc.models.store import ModelStore


def jpg(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok
    return data.tobytes()


def group_photo(astronaut: np.ndarray, grace: np.ndarray) -> np.ndarray:
    """The astronaut (left) and a smaller Grace Hopper (right) in one photo."""
    small = cv2.resize(grace, (grace.shape[1] * 300 // grace.shape[0], 300))
    group = np.zeros((512, 512 + small.shape[1], 3), np.uint8)
    group[:, :512] = astronaut
    group[:300, 512:] = small
    return group


def decodes_as_jpeg(url: str) -> bool:
    import base64

    assert url.startswith("data:image/jpeg;base64,")
    raw = base64.b64decode(url.split(",", 1)[1])
    return cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR) is not None


@pytest.fixture(scope="module")
def detector(retinaface_session: ort.InferenceSession) -> RetinaFaceDetector:
    return RetinaFaceDetector(retinaface_session, input_size=640)


class Api:
    def __init__(self, base: str, http: aiohttp.ClientSession, app: Any) -> None:
        self.base, self.http, self.app = base, http, app
        self.sid = ""

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        headers = {"X-Session-Id": self.sid, **kwargs.pop("headers", {})}
        async with self.http.request(method, self.base + path, headers=headers, **kwargs) as resp:
            return resp.status, await resp.json()

    async def upload(self, image: np.ndarray, query: str = "") -> tuple[int, Any]:
        return await self.call(
            "POST", "/api/source" + query, data=jpg(image), headers={"Content-Type": "image/jpeg"}
        )


@pytest.fixture
async def api(detector: RetinaFaceDetector) -> AsyncIterator[Api]:
    app = create_app(Settings(), PaintEngine(detector))
    async with serve_in_process(app) as base, aiohttp.ClientSession() as http:
        api = Api(base, http, app)
        status, body = await api.call("POST", "/api/session")
        assert status == 201
        api.sid = body["session_id"]
        yield api


async def test_every_face_is_listed_and_one_can_be_picked(
    api: Api, astronaut_bgr: np.ndarray, grace_bgr: np.ndarray
) -> None:
    group = group_photo(astronaut_bgr, grace_bgr)
    status, body = await api.upload(group)
    assert status == 200, body
    assert body["selected"] == 0 and body["faces_found"] == 2 and body["name"] == "default"
    faces = body["faces"]
    assert [f["index"] for f in faces] == [0, 1]
    assert all(decodes_as_jpeg(f["thumbnail"]) and f["score"] > 0.9 for f in faces)
    assert all(f["warnings"] == [] for f in faces), faces
    # The old keys describe the selected face: the largest (the astronaut, left half).
    assert body["box"][2] < 512 and faces[0]["box"] == body["box"]

    # Pick the other face at upload time (multipart form field).
    form = aiohttp.FormData()
    form.add_field("face", "1")
    form.add_field("image", jpg(group), filename="group.jpg", content_type="image/jpeg")
    status, body = await api.call("POST", "/api/source", data=form)
    assert status == 200, body
    assert body["selected"] == 1 and body["box"][0] > 512
    session = api.app[SESSIONS].get(api.sid)
    assert session.control.source.face.bbox[0] > 512  # the swap now uses Grace Hopper's face

    # Re-pick without uploading again.
    status, body = await api.call("POST", "/api/source/select", json={"name": "default", "face": 0})
    assert status == 200, body
    assert body["selected"] == 0 and body["box"][2] < 512 and len(body["faces"]) == 2
    assert session.control.source.face.bbox[2] < 512
    status, listed = await api.call("GET", "/api/sources")
    assert status == 200
    assert [(s["name"], s["selected"]) for s in listed["sources"]] == [("default", 0)]
    assert listed["assignments"] == [] and decodes_as_jpeg(listed["sources"][0]["thumbnail"])


async def test_bad_face_choices_are_4xx(api: Api, astronaut_bgr: np.ndarray) -> None:
    status, body = await api.upload(astronaut_bgr, "?face=3")
    assert (status, body["error"]["code"]) == (400, "bad_face_index")
    assert "1 face" in body["error"]["message"]
    status, body = await api.upload(astronaut_bgr, "?face=first")
    assert (status, body["error"]["code"]) == (400, "bad_face_index")
    status, body = await api.call("POST", "/api/source/select", json={"name": "default", "face": 0})
    assert (status, body["error"]["code"]) == (404, "unknown_source")
    assert (await api.upload(astronaut_bgr))[0] == 200
    for payload, code in (
        ({"name": "default", "face": 1}, "bad_face_index"),
        ({"name": "default"}, "bad_face_index"),
        ({"name": "default", "face": True}, "bad_face_index"),
        ({"name": "../etc", "face": 0}, "bad_source_name"),
        ({"name": 5, "face": 0}, "bad_source_name"),
    ):
        status, body = await api.call("POST", "/api/source/select", json=payload)
        assert (status, body["error"]["code"]) == (400, code), payload
    status, body = await api.call("POST", "/api/source/select", data=b"[1]")
    assert (status, body["error"]["code"]) == (400, "bad_json")
    status, body = await api.upload(astronaut_bgr, "?name=" + "x" * 40)
    assert (status, body["error"]["code"]) == (400, "bad_source_name")


async def test_named_sources_up_to_the_limit(
    api: Api, astronaut_bgr: np.ndarray, grace_bgr: np.ndarray
) -> None:
    names = [f"person {i}" for i in range(MAX_SOURCES)]
    for i, name in enumerate(names):
        status, body = await api.upload(astronaut_bgr if i % 2 else grace_bgr, f"?name={name}")
        assert status == 200 and body["name"] == name, body
    status, body = await api.upload(astronaut_bgr, "?name=one too many")
    assert (status, body["error"]["code"]) == (409, "too_many_sources")
    assert (await api.upload(grace_bgr, "?name=person 3"))[0] == 200  # replacing one is fine
    status, listed = await api.call("GET", "/api/sources")
    assert [s["name"] for s in listed["sources"]] == names
    # Without a source named "default", unmapped faces get the oldest.
    assert listed["default"] == "person 0"
    session = api.app[SESSIONS].get(api.sid)
    assert session.control.source is session.sources.get("person 0").source

    assert (await api.call("DELETE", "/api/source?name=person 0")) == (200, {"ok": True})
    status, body = await api.call("DELETE", "/api/source?name=person 0")
    assert (status, body["error"]["code"]) == (404, "unknown_source")
    assert session.control.source is session.sources.get("person 1").source
    assert (await api.call("DELETE", "/api/source")) == (200, {"ok": True})
    status, listed = await api.call("GET", "/api/sources")
    assert listed == {"sources": [], "default": None, "assignments": []}
    assert session.control.source is None and session.control.casting is None


async def test_photos_are_kept_in_the_session_only(api: Api, astronaut_bgr: np.ndarray) -> None:
    assert (await api.upload(astronaut_bgr))[0] == 200
    session = api.app[SESSIONS].get(api.sid)
    assert session.sources.get("default").photo == jpg(astronaut_bgr)
    assert (await api.call("DELETE", "/api/session")) == (200, {"ok": True})
    assert session.sources.entries == {} and session.casting.state.sources == {}
    status, body = await api.call("GET", "/api/sources")
    assert (status, body["error"]["code"]) == (404, "unknown_session")


async def test_blurred_and_covered_faces_are_warned_about(
    api: Api, grace_bgr: np.ndarray, astronaut_bgr: np.ndarray
) -> None:
    status, body = await api.upload(cv2.GaussianBlur(grace_bgr, (0, 0), 3))
    assert status == 200
    assert [w["code"] for w in body["faces"][0]["warnings"]] == ["blurred"]
    assert body["warnings"] == body["faces"][0]["warnings"]
    covered = grace_bgr.copy()
    covered[110:340, 265:360] = 40  # the right half of the face, as a hand would
    status, body = await api.upload(covered)
    assert status == 200
    assert "occluded" in [w["code"] for w in body["faces"][0]["warnings"]]
    status, body = await api.upload(cv2.resize(astronaut_bgr, None, fx=0.4, fy=0.4))
    assert status == 200
    assert [w["code"] for w in body["faces"][0]["warnings"]] == ["small"]
    assert all(w["message"] for w in body["faces"][0]["warnings"])


def test_turned_faces_are_told_from_tilted_ones(detector: RetinaFaceDetector, grace_bgr: np.ndarray) -> None:
    (face,) = detector.detect(grace_bgr)
    assert turn_ratio(face.kps) < 0.05 and face_warnings(grace_bgr, face) == []
    # Rolled 30 degrees about the nose: still frontal.
    centre = face.kps[2]
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    rolled = (face.kps - centre) @ np.array([[c, s], [-s, c]], np.float32) + centre
    assert turn_ratio(rolled) < 0.05
    # The nose a third of the eye distance towards one eye: turned.
    kps = face.kps.copy()
    kps[2, 0] += (kps[1, 0] - kps[0, 0]) / 3
    turned = Face(bbox=face.bbox, score=face.score, kps=kps)
    assert [w.code for w in face_warnings(grace_bgr, turned)] == ["turned"]


async def test_upload_warns_when_much_of_the_face_is_hidden(model_store: ModelStore) -> None:
    # The embedded engine measures how much of the face the photo hides (mirrored from the other
    # side): a turned head says so with a percentage, a frontal one gets no warning.
    from swaprtc.embedded.engine import EmbeddedEngine

    engine = EmbeddedEngine.from_store(model_store, Settings())
    app = create_app(Settings(), engine)
    async with serve_in_process(app) as base, aiohttp.ClientSession() as http:
        api = Api(base, http, app)
        status, body = await api.call("POST", "/api/session")
        api.sid = body["session_id"]
        status, body = await api.upload(load_bgr("obama_turned.jpg"))
        assert status == 200, body
        turned = [w for w in body["warnings"] if w["code"] == "turned"]
        assert len(turned) == 1 and "%" in turned[0]["message"], body["warnings"]
        assert body["faces"][0]["warnings"] == body["warnings"]
        status, body = await api.upload(load_bgr("obama.jpg"))
        assert status == 200 and body["warnings"] == [], body


async def test_a_crowd_photo_lists_the_largest_twenty_faces(api: Api, astronaut_bgr: np.ndarray) -> None:
    tile = cv2.resize(astronaut_bgr[30:230, 130:330], (120, 120), interpolation=cv2.INTER_AREA)
    crowd = np.vstack([np.hstack([tile] * 5)] * 5)  # 25 faces
    status, body = await api.upload(crowd)
    assert status == 200, body
    assert body["faces_found"] == 25 and len(body["faces"]) == 20
    status, body = await api.call("POST", "/api/source/select", json={"name": "default", "face": 20})
    assert (status, body["error"]["code"]) == (400, "bad_face_index")
