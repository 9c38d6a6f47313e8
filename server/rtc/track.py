"""SwapTrack: the outgoing video track that swaps faces in the newest incoming frame.

A reader task drains the remote track into a newest-frame mailbox (aiortc's own queue is
unbounded, so awaiting every frame would fall behind forever). ``recv`` takes the newest frame and
runs the session's FrameProcessor on the shared inference executor, never on the default executor
aiortc encodes in. Each track has at most one job in flight, so with a FIFO executor sessions take
turns and one backlogged session cannot starve another.

Never leak the unswapped face: once a source is set, a frame with a face is sent only swapped or
with its faces hidden. If the swap misses its deadline (first-call warm-up, an engine slower than
the camera) the current frame goes out with faces hidden while the swap finishes; if the engine
raises, faces found by ``engine.detect`` are hidden, and if that fails too the whole frame is.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from functools import partial
from typing import Any, TypeVar

import cv2
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import VideoFrame

from server.engine import Engine, FrameProcessor
from server.rtc.mailbox import MailboxClosed, NewestMailbox
from server.rtc.privacy import hide_faces, hide_frame
from server.rtc.stats import StreamStats
from server.types import Face, SourceFace, SwapOptions, SwapResult

log = logging.getLogger(__name__)

R = TypeVar("R")
VIDEO_TIME_BASE = Fraction(1, 90000)
DEFAULT_DEADLINE_S = 0.2  # longest a frame waits for its swap before going out with faces hidden
DEFAULT_GUARD_TIMEOUT_S = 0.3  # longest the hide path waits for a face detection


class InferencePool:
    """The executors model work runs on, shared by every session of one app.

    ``inference`` runs swaps and source preparation; ``guard`` runs the quick detections used to
    hide faces, so hiding never waits behind a slow swap.
    """

    def __init__(self, threads: int = 1) -> None:
        self.inference = ThreadPoolExecutor(max(1, threads), thread_name_prefix="swaprtc-infer")
        self.guard = ThreadPoolExecutor(1, thread_name_prefix="swaprtc-guard")

    def run(self, fn: Callable[..., R], *args: Any) -> asyncio.Future[R]:
        return asyncio.get_running_loop().run_in_executor(self.inference, partial(fn, *args))

    def run_guard(self, fn: Callable[..., R], *args: Any) -> asyncio.Future[R]:
        return asyncio.get_running_loop().run_in_executor(self.guard, partial(fn, *args))

    def shutdown(self) -> None:
        self.inference.shutdown(wait=False, cancel_futures=True)
        self.guard.shutdown(wait=False, cancel_futures=True)


@dataclass
class StreamControl:
    """Live, per-session inputs of the track: the source identity and the swap options."""

    source: SourceFace | None = None
    options: SwapOptions = field(default_factory=SwapOptions)
    generation: int = 0  # bumped on every source change, so the track resets tracking state

    def set_source(self, source: SourceFace | None) -> None:
        self.source = source
        self.generation += 1


@dataclass(frozen=True)
class Arrival:
    frame: VideoFrame
    at: float  # time.monotonic() when the reader received it


def to_video_frame(bgr: np.ndarray, pts: int | None, time_base: Fraction = VIDEO_TIME_BASE) -> VideoFrame:
    """BGR → yuv420p VideoFrame with one cvtColor; odd sizes are cropped to even (4:2:0 needs it)."""
    h, w = bgr.shape[:2]
    if h % 2 or w % 2:
        bgr = bgr[: h - h % 2, : w - w % 2]
    yuv = cv2.cvtColor(np.ascontiguousarray(bgr), cv2.COLOR_BGR2YUV_I420)
    frame = VideoFrame.from_numpy_buffer(yuv, format="yuv420p")
    frame.pts = pts
    frame.time_base = time_base
    return frame


def _retrieve(fut: asyncio.Future[Any]) -> None:
    """Mark an abandoned job's exception as seen (its frame is no longer wanted)."""
    if not fut.cancelled():
        fut.exception()


class SwapTrack(MediaStreamTrack):
    kind = "video"

    def __init__(
        self,
        source: MediaStreamTrack,
        engine: Engine,
        processor: FrameProcessor,
        control: StreamControl,
        pool: InferencePool,
        stats: StreamStats | None = None,
        *,
        deadline_s: float = DEFAULT_DEADLINE_S,
        guard_timeout_s: float = DEFAULT_GUARD_TIMEOUT_S,
    ) -> None:
        super().__init__()
        self._source = source
        self._engine = engine
        self._processor = processor
        self._control = control
        self._pool = pool
        self.stats = stats if stats is not None else StreamStats()
        self.deadline_s = deadline_s
        self.guard_timeout_s = guard_timeout_s
        self._mailbox: NewestMailbox[Arrival] = NewestMailbox()
        self._reader: asyncio.Task[None] | None = None
        self._job: asyncio.Future[SwapResult] | None = None
        self._job_arrival: Arrival | None = None
        self._generation_seen = control.generation
        self._last_faces: tuple[Face, ...] = ()
        self._last_pts: int | None = None
        self._clock_start: float | None = None

    # --- reading -------------------------------------------------------------------------------
    def _ensure_reader(self) -> None:
        if self._reader is None:
            self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        try:
            while True:
                frame = await self._source.recv()
                self.stats.frames_in += 1
                self._mailbox.put(Arrival(frame, time.monotonic()))
                self.stats.dropped = self._mailbox.dropped
        except MediaStreamError:
            pass
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("reading the remote track failed")
        finally:
            self._mailbox.close()

    def stop(self) -> None:
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()
        self._mailbox.close()
        super().stop()

    # --- producing -----------------------------------------------------------------------------
    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        self._ensure_reader()
        try:
            arrival = await self._mailbox.get()
        except MailboxClosed:
            self.stop()
            raise MediaStreamError from None
        pts = self._next_pts(arrival.frame)
        time_base = arrival.frame.time_base or VIDEO_TIME_BASE
        if self._control.source is None and self._job is None:
            # No swap requested: the decoded frame goes back out as it is, no conversion at all.
            frame = arrival.frame
            frame.pts, frame.time_base = pts, time_base
            shown = arrival
            self.stats.faces = self.stats.hidden = 0
        else:
            out, shown = await self._produce(arrival.frame.to_ndarray(format="bgr24"), arrival)
            frame = to_video_frame(out, pts, time_base)
        self.stats.frames_out += 1
        self.stats.record_latency((time.monotonic() - shown.at) * 1000.0)
        return frame

    def _next_pts(self, frame: VideoFrame) -> int:
        pts = frame.pts
        if pts is None:  # a source without timestamps: use our own 90 kHz clock
            now = time.monotonic()
            self._clock_start = self._clock_start if self._clock_start is not None else now
            pts = int((now - self._clock_start) * 90000)
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
        self._last_pts = pts
        return pts

    async def _produce(self, image: np.ndarray, arrival: Arrival) -> tuple[np.ndarray, Arrival]:
        control = self._control
        source = control.source
        if source is None:
            # No swap requested: pass through. An abandoned job is dropped once it finishes.
            if self._job is not None and self._job.done():
                self._job = None
            self.stats.faces = self.stats.hidden = 0
            return image, arrival
        if self._job is None:
            reset = control.generation != self._generation_seen
            self._generation_seen = control.generation
            self._job = self._pool.run(self._process, image, source, control.options, reset)
            self._job.add_done_callback(_retrieve)
            self._job_arrival = arrival
        done, _ = await asyncio.wait({self._job}, timeout=self.deadline_s)
        if not done:
            # Warm-up or an engine slower than the deadline: the swap keeps running, this frame
            # goes out with its faces hidden.
            return await self._hidden(image), arrival
        job, job_arrival = self._job, self._job_arrival or arrival
        self._job = self._job_arrival = None
        try:
            result = job.result()
        except Exception:
            self.stats.engine_errors += 1
            if self.stats.engine_errors <= 3 or self.stats.engine_errors % 100 == 0:
                log.warning("engine failed on a frame (%d so far)", self.stats.engine_errors, exc_info=True)
            return await self._hidden(image), arrival
        self._last_faces = result.faces
        self.stats.faces = len(result.faces)
        self.stats.record_stages(result.timings_ms)
        if result.swapped > 0:
            self.stats.swapped_frames += 1
            self.stats.hidden = 0
            return result.frame, job_arrival
        if result.faces:
            # Faces found but none replaced (too small, badly posed): never show them unswapped.
            self.stats.hidden_frames += 1
            self.stats.hidden = len(result.faces)
            return hide_faces(result.frame, result.faces), job_arrival
        self.stats.hidden = 0
        return result.frame, job_arrival

    def _process(
        self, image: np.ndarray, source: SourceFace, options: SwapOptions, reset: bool
    ) -> SwapResult:
        # Runs on the inference executor; one job per track at a time, so the processor (not
        # thread-safe) is only ever used by one thread at once.
        if reset:
            self._processor.reset()
        return self._processor.process(image, source, options)

    async def _hidden(self, image: np.ndarray) -> np.ndarray:
        """``image`` with every face hidden: detected now, plus where faces were last seen."""
        self.stats.hidden_frames += 1
        try:
            detected = await asyncio.wait_for(
                self._pool.run_guard(self._engine.detect, image), self.guard_timeout_s
            )
        except Exception:
            # Detection failed or is too slow: no face position can be trusted.
            log.debug("detection for hiding failed; hiding the whole frame", exc_info=True)
            self.stats.hidden = max(1, len(self._last_faces))
            return hide_frame(image)
        faces = [*detected, *self._last_faces]
        self.stats.hidden = len(detected)
        if detected:
            self._last_faces = tuple(detected)
        return hide_faces(image, faces) if faces else image
