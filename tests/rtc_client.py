"""A reusable aiortc test client for swaprtc, plus frame-id strips and a synthetic camera.

The client speaks the HTTP API of docs/API.md: create a session, upload a source face, send an
offer with a ``control`` DataChannel, then stream frames from a ``SyntheticCamera`` and collect the
received (swapped) frames with their arrival times. Each sent frame carries its id as a barcode in
the bottom ``STRIP_ROWS`` rows, which the server leaves alone when no face is there, so latency is
measured without clock sync: arrival time minus the send time of the decoded id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import aiohttp
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import VideoFrame

STRIP_ROWS = 16
STRIP_BITS = 16
VIDEO_CLOCK = 90000


def draw_frame_id(image: np.ndarray, frame_id: int) -> np.ndarray:
    """A copy of ``image`` whose bottom rows encode ``frame_id`` as black/white blocks."""
    out = image.copy()
    h, w = out.shape[:2]
    block = w // STRIP_BITS
    out[h - STRIP_ROWS :] = 0
    for bit in range(STRIP_BITS):
        if frame_id >> bit & 1:
            out[h - STRIP_ROWS :, bit * block : (bit + 1) * block] = 255
    return out


def read_frame_id(image: np.ndarray) -> int:
    h, w = image.shape[:2]
    block = w // STRIP_BITS
    rows = image[h - STRIP_ROWS + 3 : h - 3]
    value = 0
    for bit in range(STRIP_BITS):
        cell = rows[:, bit * block + block // 4 : (bit + 1) * block - block // 4]
        if cell.mean() > 127:
            value |= 1 << bit
    return value


class SyntheticCamera(MediaStreamTrack):
    """A video track that paces ``image`` (with a frame-id strip) at ``fps`` and records send times."""

    kind = "video"

    def __init__(self, image: np.ndarray, fps: float = 30.0, *, max_frames: int | None = None) -> None:
        super().__init__()
        self.image = image
        self.fps = fps
        self.max_frames = max_frames
        self.sent_at: dict[int, float] = {}
        self._count = 0
        self._start: float | None = None

    async def recv(self) -> VideoFrame:
        if self.readyState != "live" or (self.max_frames is not None and self._count >= self.max_frames):
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        due = self._start + self._count / self.fps
        if due > now:
            await asyncio.sleep(due - now)
        frame_id = self._count % (1 << STRIP_BITS)
        self._count += 1
        frame = VideoFrame.from_ndarray(draw_frame_id(self.image, frame_id), format="bgr24")
        frame.pts = int((self._count - 1) * VIDEO_CLOCK / self.fps)
        frame.time_base = Fraction(1, VIDEO_CLOCK)
        self.sent_at[frame_id] = time.monotonic()
        return frame


@dataclass
class Received:
    image: np.ndarray  # BGR
    frame_id: int
    at: float
    pts: int | None


@dataclass
class SwapClient:
    """One client session against a running swaprtc server at ``base_url``."""

    base_url: str
    session_id: str | None = None
    pc: RTCPeerConnection | None = None
    camera: SyntheticCamera | None = None
    received: list[Received] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    codec: str | None = None
    headers: dict[str, str] = field(default_factory=dict)  # sent with every call (e.g. a token)
    _http: aiohttp.ClientSession | None = None
    _channel: Any = None  # RTCDataChannel once connected
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    _first_frame: asyncio.Event = field(default_factory=asyncio.Event)

    async def __aenter__(self) -> SwapClient:
        self._http = aiohttp.ClientSession(headers=self.headers)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def http(self) -> aiohttp.ClientSession:
        assert self._http is not None, "use SwapClient as an async context manager"
        return self._http

    def _headers(self) -> dict[str, str]:
        return {"X-Session-Id": self.session_id} if self.session_id else {}

    async def create_session(self) -> dict[str, Any]:
        async with self.http.post(f"{self.base_url}/api/session") as resp:
            body = await resp.json()
            assert resp.status == 201, body
        self.session_id = body["session_id"]
        return body

    async def upload_source(self, image_bytes: bytes, content_type: str = "image/png") -> tuple[int, dict]:
        async with self.http.post(
            f"{self.base_url}/api/source",
            data=image_bytes,
            headers={**self._headers(), "Content-Type": content_type},
        ) as resp:
            return resp.status, await resp.json()

    async def send_settings(self, **settings: Any) -> None:
        assert self._channel is not None
        self._channel.send(json.dumps({"type": "settings", **settings}))

    async def connect(self, camera: SyntheticCamera, *, timeout: float = 15.0) -> None:
        """Offer camera video (sendrecv) and a ``control`` channel; wait until connected."""
        self.camera = camera
        self.pc = pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._channel = pc.createDataChannel("control")
        self._channel.on("message", self._on_message)
        pc.addTrack(camera)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video":
                self._tasks.append(asyncio.ensure_future(self._consume(track)))

        await pc.setLocalDescription(await pc.createOffer())
        body = {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}
        if self.session_id:
            body["session_id"] = self.session_id
        async with self.http.post(f"{self.base_url}/api/offer", json=body) as resp:
            answer = await resp.json()
            assert resp.status == 200, answer
        self.session_id = answer["session_id"]
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
        self.codec = answer_video_codec(answer["sdp"])
        self._tasks.append(asyncio.ensure_future(self._ping()))
        await asyncio.wait_for(self._first_frame.wait(), timeout)

    def _on_message(self, message: str | bytes) -> None:
        with contextlib.suppress(ValueError, TypeError):
            self.messages.append(json.loads(message))

    async def _ping(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self._channel.readyState == "open":
                self._channel.send(json.dumps({"type": "ping", "t": time.time() * 1000}))

    async def _consume(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                image = frame.to_ndarray(format="bgr24")
                self.received.append(Received(image, read_frame_id(image), time.monotonic(), frame.pts))
                self._first_frame.set()

    def latencies_s(self, since: float = 0.0) -> list[float]:
        """Send-to-receive delay of every received frame that arrived after ``since``."""
        assert self.camera is not None
        return [
            r.at - self.camera.sent_at[r.frame_id]
            for r in self.received
            if r.at >= since and r.frame_id in self.camera.sent_at
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self.pc is not None:
            await self.pc.close()
            self.pc = None
        if self._http is not None:
            await self._http.close()
            self._http = None


def answer_video_codec(sdp: str) -> str | None:
    """The first video codec of the answer's m=video line, lower case (``vp8`` or ``h264``)."""
    lines = sdp.splitlines()
    in_video = False
    first_pt: str | None = None
    for line in lines:
        if line.startswith("m="):
            in_video = line.startswith("m=video")
            first_pt = line.split()[3] if in_video and len(line.split()) > 3 else None
        elif in_video and first_pt and line.startswith(f"a=rtpmap:{first_pt} "):
            return line.split()[1].split("/")[0].lower()
    return None


@contextlib.asynccontextmanager
async def serve_in_process(app: Any, host: str = "127.0.0.1", ssl_context: Any = None) -> Any:
    """Run an aiohttp app on a real socket (free port) the way ``swaprtc serve`` does (guarded
    connections with the app's read limits); yields its base URL."""
    from aiohttp import web
    from swaprtc.http.server import HardenedRunner
    from swaprtc.rtc.app import SETTINGS, http_limits

    runner = HardenedRunner(app, http_limits(app[SETTINGS]) if SETTINGS in app else None)
    await runner.setup()
    site = web.TCPSite(runner, host, 0, ssl_context=ssl_context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"{'https' if ssl_context else 'http'}://{host}:{port}"
    finally:
        await runner.cleanup()
