"""One capacity-benchmark client, in its own process: a real aiortc session against the server.

It creates a session, uploads a real face photo and streams a real face at 30 fps with a frame-id
strip (tests/rtc_client.py, imported from the source checkout). The camera (``CAMERAS``) is the
picture ``still``, ``drift``-ing sideways like a webcam picture, or ``talking`` (mouth and brows
moving, benchmarks/talking.py: the embedded engine reuses renderings while a face holds still, so
a still camera flatters it). The camera's frames are VP8-encoded once, at the bitrate the
server's answer asks a browser for, and then replayed in a loop (``ReplayCamera``): encoding every
frame live cost each client about as much CPU as the server's own encode, and the clients share
the machine with the server under test. When the parent asks over its pipe, it reports the frames
received and their latencies inside a time window. Only the frame id is read from each received
frame (from the luma plane), so the client stays cheap.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import sys
import time
from fractions import Fraction
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

CAMERAS = ("still", "drift", "talking")
LOOP_FRAMES = 60  # 2 s: the drift's and the talking face's period, so the loop joins smoothly
REPLAY_BITRATE = 1_500_000  # what the server's answer asks a browser to start at (x-google-start-bitrate)
VIDEO_CLOCK = 90000


def encode_loop(frames: list[np.ndarray], draw_frame_id: Any, fps: float = 30.0) -> list[bytes]:
    """``frames`` with their frame-id strips (ids 0..n-1) as VP8 packets, the first a keyframe and
    the rest predicted from it, so the loop can be replayed: each pass starts on its keyframe."""
    import av
    from av import VideoFrame

    h, w = frames[0].shape[:2]
    codec: Any = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height, codec.pix_fmt = w, h, "yuv420p"
    codec.bit_rate = REPLAY_BITRATE
    codec.time_base = Fraction(1, round(fps))
    codec.gop_size = len(frames)
    codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    packets: list[bytes] = []
    for i, image in enumerate(frames):
        frame = VideoFrame.from_ndarray(draw_frame_id(image, i), format="bgr24").reformat(format="yuv420p")
        frame.pts = i
        packets.extend(bytes(p) for p in codec.encode(frame))
    packets.extend(bytes(p) for p in codec.encode(None))
    if len(packets) != len(frames):
        raise RuntimeError(f"the encoder gave {len(packets)} packets for {len(frames)} frames")
    return packets


def replay_camera(track_class: Any, packets: list[bytes], fps: float = 30.0) -> Any:
    """A video track that paces pre-encoded ``packets`` at ``fps`` in a loop and records when each
    frame id went out (``sent_at``, as tests/rtc_client.SyntheticCamera does). aiortc's sender
    only packetises what a track gives as ``av.Packet``: no encoder runs in the client."""
    import av
    from aiortc.mediastreams import MediaStreamError

    class ReplayCamera(track_class):
        kind = "video"

        def __init__(self) -> None:
            super().__init__()
            self.sent_at: dict[int, float] = {}
            self._count = 0
            self._start: float | None = None

        async def recv(self) -> Any:
            if self.readyState != "live":
                raise MediaStreamError
            now = time.monotonic()
            if self._start is None:
                self._start = now
            due = self._start + self._count / fps
            if due > now:
                await asyncio.sleep(due - now)
            frame_id = self._count % len(packets)
            packet = av.Packet(packets[frame_id])
            packet.pts = int(self._count * VIDEO_CLOCK / fps)
            packet.time_base = Fraction(1, VIDEO_CLOCK)
            self._count += 1
            self.sent_at[frame_id] = time.monotonic()
            return packet

    return ReplayCamera()


def _frame_id(frame: Any, read_frame_id: Any) -> int:
    plane = frame.planes[0]
    luma = np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)[:, : frame.width]
    return int(read_frame_id(luma))


def drifting_camera(camera_class: Any, image: np.ndarray) -> Any:
    """A SyntheticCamera whose picture drifts sideways and back every 2 s (60 frames, as
    ``live_frames`` cuts them), so the server's codecs see motion as from a webcam."""
    frames = camera_loop("drift", image)

    class Drifting(camera_class):
        async def recv(self) -> Any:
            self.image = frames[self._count % len(frames)]
            return await super().recv()

    return Drifting(frames[0], 30.0)


def check_cameras(names: list[str]) -> list[str]:
    """``names`` if each is one of ``CAMERAS``; a ValueError naming the others before anything starts."""
    unknown = [name for name in names if name not in CAMERAS]
    if unknown or not names:
        raise ValueError(f"unknown camera(s) {unknown or names}; choose from {list(CAMERAS)}")
    return names


def camera_loop(camera: str, image: np.ndarray, kps: np.ndarray | None = None) -> list[np.ndarray]:
    """The frames a client replays for ``camera`` (one of ``CAMERAS``) made from ``image``: the
    talking face is warped from its five key points ``kps`` (RetinaFace's, found by the caller)."""
    check_cameras([camera])
    if camera == "still":
        return [image] * (LOOP_FRAMES // 2)  # 1 s: nothing changes, a shorter loop encodes sooner
    if camera == "drift":
        from swaprtc.embedded.bench import live_frames

        h, w = image.shape[:2]
        return live_frames(image, LOOP_FRAMES, (w, h))
    if kps is None:
        raise ValueError("the talking camera needs the five key points of the picture's face")
    from swaprtc.benchmarks.talking import talking_frames

    return talking_frames(image, kps, LOOP_FRAMES)


async def _session(
    base: str,
    photo: bytes,
    camera_image: np.ndarray,
    conn: Connection,
    repo: Path,
    camera: str,
    kps: np.ndarray | None,
) -> None:
    # The test client lives in the source checkout (tests/rtc_client.py), not in the package.
    sys.path.insert(0, str(repo))
    from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

    rtc_client: Any = importlib.import_module("tests.rtc_client")
    SwapClient, draw_frame_id, read_frame_id = (
        rtc_client.SwapClient,
        rtc_client.draw_frame_id,
        rtc_client.read_frame_id,
    )

    arrivals: list[tuple[float, float]] = []  # (arrival time, latency s)

    async def consume(self: Any, track: MediaStreamTrack) -> None:
        # Replaces SwapClient._consume, which keeps every received picture: only ids and times here.
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                now = time.monotonic()
                sent = self.camera.sent_at.get(_frame_id(frame, read_frame_id))
                if sent is not None:
                    arrivals.append((now, now - sent))
                self._first_frame.set()

    LeanClient: Any = type("LeanClient", (SwapClient,), {"_consume": consume})
    loop = asyncio.get_running_loop()
    async with LeanClient(base) as client:
        await client.create_session()
        status, body = await client.upload_source(photo, "image/png")
        if status != 200:
            conn.send(("error", f"upload: {status} {body}"))
            return
        # Built here, not in the parent: 60 frames pickled to every client process cost more.
        frames = camera_loop(camera, camera_image, kps)
        packets = await loop.run_in_executor(None, encode_loop, frames, draw_frame_id)
        camera = replay_camera(MediaStreamTrack, packets)
        await client.connect(camera, timeout=60)
        conn.send(("ready", client.session_id))
        while True:
            message = await loop.run_in_executor(None, conn.recv)
            if message[0] == "window":
                t0, t1 = message[1], message[2]
                conn.send(("window", [lat for at, lat in arrivals if t0 <= at < t1]))
                del arrivals[: max(0, len(arrivals) - 3000)]
            else:
                return


def client_main(
    base: str,
    photo: bytes,
    camera_image: np.ndarray,
    conn: Connection,
    repo: str,
    camera: str = "still",
    kps: np.ndarray | None = None,
) -> None:
    """Entry point of a client process (multiprocessing, spawn): streams ``camera_loop(camera,
    camera_image, kps)``."""
    try:
        asyncio.run(_session(base, photo, camera_image, conn, Path(repo), camera, kps))
    except Exception as exc:
        with contextlib.suppress(Exception):
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
