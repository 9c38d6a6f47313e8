"""Operating the service, through real sockets: /metrics after a real aiortc session, /healthz and
/readyz, and the JSON log format of the real server process."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import cv2
import numpy as np
import pytest
from swaprtc.embedded.engine import EmbeddedEngine
from swaprtc.observability.metrics import Metrics
from swaprtc.rtc.app import create_app
from swaprtc.settings import Settings

from tests.metrics_support import Samples, parse, value
from tests.rtc_client import SwapClient, SyntheticCamera, serve_in_process
from tests.server_process import server_process

if TYPE_CHECKING:
    import onnxruntime as ort
    from swaprtc.models.store import ModelStore


def jpg(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    return data.tobytes()


async def scrape(http: aiohttp.ClientSession, base: str) -> Samples:
    async with http.get(f"{base}/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=")
        return parse(await resp.text())


@pytest.fixture(scope="module")
def embedded(model_store: ModelStore) -> EmbeddedEngine:
    return EmbeddedEngine.from_store(model_store, Settings())


@pytest.fixture
async def served(embedded: EmbeddedEngine) -> AsyncIterator[tuple[str, Any, aiohttp.ClientSession]]:
    app = create_app(Settings(max_sessions=2), embedded, metrics=Metrics())
    async with serve_in_process(app) as base, aiohttp.ClientSession() as http:
        yield base, app, http


async def test_metrics_count_a_real_session(
    served: tuple[str, Any, aiohttp.ClientSession], astronaut_bgr: np.ndarray, grace_bgr: np.ndarray
) -> None:
    base, _, http = served
    before = await scrape(http, base)
    assert value(before, "swaprtc_frames_in_total") == 0
    assert value(
        before, "swaprtc_model_info", engine="embedded", role="detector", provider="CPUExecutionProvider"
    )
    async with SwapClient(base) as client:
        await client.create_session()
        status, _ = await client.upload_source(jpg(grace_bgr), "image/jpeg")
        assert status == 200
        status, body = await client.upload_source(b"not an image", "image/jpeg")
        assert status == 400
        await client.connect(SyntheticCamera(astronaut_bgr, 15))
        for _ in range(60):  # a busy machine may need a while for the first swapped frames
            await asyncio.sleep(0.5)
            during = await scrape(http, base)
            swapped = value(during, "swaprtc_frames_swapped_total")
            if swapped >= 5 and value(during, "swaprtc_frames_out_total") >= 10:
                break
        received = len(client.received)
    assert value(during, "swaprtc_sessions", state="open") == 1
    assert value(during, "swaprtc_sessions", state="connected") == 1
    frames_in = value(during, "swaprtc_frames_in_total")
    frames_out = value(during, "swaprtc_frames_out_total")
    assert frames_in >= 10 and frames_out >= 10, (frames_in, frames_out)
    assert frames_out <= frames_in
    assert frames_out >= received - 2  # what the client got was counted (a frame or two in flight)
    swapped = value(during, "swaprtc_frames_swapped_total")
    hidden = value(during, "swaprtc_frames_hidden_total")
    assert swapped >= 5 and swapped + hidden <= frames_out, (swapped, hidden, frames_out)
    # The embedded engine's stages were timed, each once per processed frame.
    processed = value(during, "swaprtc_stage_seconds_count", stage="total")
    assert processed >= swapped
    for stage in ("detect", "landmarks", "warp", "blend"):
        assert value(during, "swaprtc_stage_seconds_count", stage=stage) == processed, stage
    assert value(during, "swaprtc_stage_seconds_sum", stage="total") > 0
    assert value(during, "swaprtc_frame_latency_seconds_count") == frames_out
    assert value(during, "swaprtc_uploads_total", result="ok") == 1
    assert value(during, "swaprtc_uploads_total", result=body["error"]["code"]) == 1
    assert value(during, "swaprtc_http_requests_total", route="/api/offer", method="POST", status="200") == 1
    # The client closed its peer connection: the server ended the session by itself.
    for _ in range(50):
        after = await scrape(http, base)
        if value(after, "swaprtc_sessions", state="open") == 0:
            break
        await asyncio.sleep(0.1)
    assert value(after, "swaprtc_sessions", state="open") == 0
    assert value(after, "swaprtc_session_ends_total", reason="connection_ended") == 1


async def test_http_routes_are_templates_not_paths(served: tuple[str, Any, aiohttp.ClientSession]) -> None:
    base, _, http = served
    for path in ("/no-such-page-1", "/no-such-page-2", "/api/nope-3"):
        async with http.get(base + path) as resp:
            assert resp.status == 404
    async with http.delete(f"{base}/api/session", headers={"X-Session-Id": "made-up-id"}) as resp:
        assert resp.status == 200  # idempotent: already gone
    samples = await scrape(http, base)
    routes = {dict(labels)["route"] for (name, labels) in samples if name == "swaprtc_http_requests_total"}
    assert not any("no-such" in r or "nope" in r for r in routes), routes
    assert value(samples, "swaprtc_http_requests_total", route="static_file", method="GET", status="404") == 2
    assert value(samples, "swaprtc_http_requests_total", route="unmatched", method="GET", status="404") == 1
    assert (
        value(samples, "swaprtc_http_requests_total", route="/api/session", method="DELETE", status="200")
        == 1
    )


async def test_two_apps_keep_separate_registries(embedded: EmbeddedEngine) -> None:
    one, two = Metrics(), Metrics()
    app = create_app(Settings(), embedded, metrics=one)
    create_app(Settings(), embedded, metrics=two)
    async with (
        serve_in_process(app) as base,
        aiohttp.ClientSession() as http,
        http.post(f"{base}/api/session") as resp,
    ):
        assert resp.status == 201
        assert value(parse(one.render().decode()), "swaprtc_sessions", state="open") == 1
        assert value(parse(two.render().decode()), "swaprtc_sessions", state="open") == 0


async def test_healthz_and_readyz_follow_capacity(
    served: tuple[str, Any, aiohttp.ClientSession], astronaut_bgr: np.ndarray
) -> None:
    base, _, http = served

    async def get(path: str) -> tuple[int, dict[str, Any], Any]:
        async with http.get(base + path) as resp:
            return resp.status, await resp.json(), resp.headers

    assert (await get("/healthz"))[:2] == (200, {"ok": True})
    status, body, _ = await get("/readyz")
    assert (status, body["ready"], body["sessions"], body["max_sessions"]) == (200, True, 0, 2)
    # Sessions without a connection hold no capacity (docs/API.md, "Limits and access").
    async with http.post(f"{base}/api/session") as resp:
        bare = (await resp.json())["session_id"]
    assert (await get("/readyz"))[0] == 200
    async with SwapClient(base) as first, SwapClient(base) as second:
        await first.connect(SyntheticCamera(astronaut_bgr, 15))
        await second.connect(SyntheticCamera(astronaut_bgr, 15))
        status, body, headers = await get("/readyz")
        assert (status, body["ready"], body["error"]["code"]) == (503, False, "full")
        assert int(headers["Retry-After"]) > 0
        assert (await get("/healthz"))[0] == 200  # full is not dead
        assert (await get("/api/health"))[1] == {"ok": True, "sessions": 3}  # unchanged
        async with http.delete(f"{base}/api/session", headers={"X-Session-Id": first.session_id}) as resp:
            assert await resp.json() == {"ok": True}
        assert (await get("/readyz"))[0] == 200
    async with http.delete(f"{base}/api/session", headers={"X-Session-Id": bare}) as resp:
        assert resp.status == 200


# --- the real server process ---------------------------------------------------------------------
async def test_real_server_json_logs_health_and_metrics(
    retinaface_session: ort.InferenceSession,
    face_landmark_path: Path,
    astronaut_bgr: np.ndarray,
    grace_bgr: np.ndarray,
) -> None:
    with server_process(["--log-format", "json"]) as server:
        async with aiohttp.ClientSession() as http:
            for path in ("/healthz", "/readyz"):
                async with http.get(server.base + path) as resp:
                    assert resp.status == 200, path
            async with SwapClient(server.base) as client:
                await client.create_session()
                assert (await client.upload_source(jpg(grace_bgr), "image/jpeg"))[0] == 200
                await client.connect(SyntheticCamera(astronaut_bgr, 15))
                await asyncio.sleep(1.0)
                session_id = client.session_id
            samples = await scrape(http, server.base)
        assert value(samples, "swaprtc_frames_out_total") > 0
        assert value(samples, "swaprtc_stage_seconds_count", stage="total") > 0
        assert server.stop() == 0
        lines = server.log().splitlines()
    assert session_id is not None
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    for record in records:
        assert {"time", "level", "logger", "message"} <= record.keys(), record
        assert "data:image" not in json.dumps(record)  # no thumbnails (face data) in any log line
        assert session_id not in json.dumps(record)  # only the id's short prefix is logged
    mine = [r for r in records if r.get("session") == session_id[:8]]
    messages = " | ".join(r["message"] for r in mine)
    assert "created" in messages and "source set" in messages, messages
    assert "connection connected" in messages and "removed" in messages, messages
