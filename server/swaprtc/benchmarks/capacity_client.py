"""One capacity-benchmark client, in its own process: a real aiortc session against the server.

It creates a session, uploads a real face photo, streams a real face at 30 fps with a frame-id
strip (tests/rtc_client.py, imported from the source checkout), the picture still or (``motion``)
drifting like a webcam picture, and, when the parent asks over its
pipe, reports the frames received and their latencies inside a time window. Only the frame id is
read from each received frame (from the luma plane), so the client stays cheap.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np


def _frame_id(frame: Any, read_frame_id: Any) -> int:
    plane = frame.planes[0]
    luma = np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)[:, : frame.width]
    return int(read_frame_id(luma))


def drifting_camera(camera_class: Any, image: np.ndarray) -> Any:
    """A SyntheticCamera whose picture drifts sideways and back every 2 s (60 frames, as
    ``live_frames`` cuts them), so the server's codecs see motion as from a webcam."""
    from swaprtc.embedded.bench import live_frames

    h, w = image.shape[:2]
    frames = live_frames(image, 60, (w, h))

    class Drifting(camera_class):
        async def recv(self) -> Any:
            self.image = frames[self._count % len(frames)]
            return await super().recv()

    return Drifting(frames[0], 30.0)


async def _session(
    base: str, photo: bytes, camera_image: np.ndarray, conn: Connection, repo: Path, motion: bool
) -> None:
    # The test client lives in the source checkout (tests/rtc_client.py), not in the package.
    sys.path.insert(0, str(repo))
    from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

    rtc_client: Any = importlib.import_module("tests.rtc_client")
    SwapClient, SyntheticCamera, read_frame_id = (
        rtc_client.SwapClient,
        rtc_client.SyntheticCamera,
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
        camera = SyntheticCamera(camera_image, 30.0)
        if motion:
            camera = drifting_camera(SyntheticCamera, camera_image)
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
    base: str, photo: bytes, camera_image: np.ndarray, conn: Connection, repo: str, motion: bool = False
) -> None:
    """Entry point of a client process (multiprocessing, spawn)."""
    try:
        asyncio.run(_session(base, photo, camera_image, conn, Path(repo), motion))
    except Exception as exc:
        with contextlib.suppress(Exception):
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
