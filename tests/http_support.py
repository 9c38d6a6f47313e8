"""Shared helpers of the HTTP tests: an in-process server with a small JSON client, the error
shape check, hostile upload bytes and a real aiortc offer to damage."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import cv2
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection
from swaprtc.rtc.app import create_app
from swaprtc.settings import Settings

from tests.engine_doubles import FixedFaceDetector, PaintEngine
from tests.rtc_client import SyntheticCamera, serve_in_process

# These tests make many calls from one address; rate limits have their own tests.
UNLIMITED: dict[str, Any] = {"rate_session_per_min": 0, "rate_offer_per_min": 0, "rate_source_per_min": 0}


def jpg(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    return data.tobytes()


def stray_byte_jpeg(width: int, height: int) -> bytes:
    """A tiny JPEG whose SOF declares ``width``×``height``, with one stray byte before the SOF
    marker: a naive marker walk gives up there, libjpeg and Pillow skip it."""
    data = bytearray(jpg(np.full((8, 8, 3), 128, np.uint8)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data[:sof]) + b"\x00" + bytes(data[sof:])


class Api:
    def __init__(self, base: str, http: aiohttp.ClientSession, app: Any) -> None:
        self.base, self.http, self.app = base, http, app

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any, Any]:
        async with self.http.request(method, self.base + path, **kwargs) as resp:
            return resp.status, await resp.json(), resp.headers

    async def session(self, **kwargs: Any) -> str:
        status, body, _ = await self.call("POST", "/api/session", **kwargs)
        assert status == 201, body
        return str(body["session_id"])


def served(settings: Settings, engine: Any = None, **app_kwargs: Any) -> Any:
    @contextlib.asynccontextmanager
    async def run() -> AsyncIterator[Api]:
        app = create_app(settings, engine or PaintEngine(FixedFaceDetector()), **app_kwargs)
        async with serve_in_process(app) as base, aiohttp.ClientSession() as http:
            yield Api(base, http, app)

    return run()


def assert_error(status: int, body: Any, want_status: int, code: str) -> None:
    assert status == want_status, body
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]


async def real_offer_lines() -> list[str]:
    """The lines of a real aiortc offer (video and a DataChannel), to be damaged by the tests."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTrack(SyntheticCamera(np.zeros((64, 64, 3), np.uint8)))
    pc.createDataChannel("control")
    await pc.setLocalDescription(await pc.createOffer())
    lines = pc.localDescription.sdp.split("\r\n")
    with contextlib.suppress(Exception):
        await pc.close()
    return lines
