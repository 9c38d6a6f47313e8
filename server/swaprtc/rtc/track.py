"""SwapTrack: the outgoing video track that swaps faces in the newest incoming frame.

A reader task drains the remote track into a newest-frame mailbox (aiortc's own queue is
unbounded, so awaiting every frame would fall behind forever). ``recv`` takes the newest frame and
runs the session's FrameProcessor on the shared inference executor, never on the default executor
aiortc encodes in. Each track has at most one job in flight, so with a FIFO executor sessions take
turns and one backlogged session cannot starve another.

Never leak the unswapped face: once a source is set, a frame with a face is sent only with every
face swapped or hidden. Faces the engine found but did not replace (``SwapResult.unswapped``) are
pixelated, also in a frame where another face was swapped. If the swap misses its deadline
(first-call warm-up, an engine slower than the camera) the current frame goes out with faces hidden
while the swap finishes; if the engine raises, faces found by ``engine.detect`` and the faces of the
last engine result are hidden, and if detection fails too the whole frame is.

Encoding in the swap job: with a connection's encoder attached (``encode_with``), the job encodes
its own frame and ``recv`` returns an ``EncodedFrame`` that the sender only packs, instead of
handing a frame to aiortc's encode on the default executor. A VP8/H264 stream is a chain (each
frame refers to the previous one), so every frame encoded must be sent, in order, and the encoder
must never run on two threads at once. So a job may encode only while the ``recv`` that started
it still waits for it (``_Handoff``); a job left behind (deadline missed, source cleared, track
stopping) returns a plain frame, which aiortc encodes after the frames sent before it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
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
from av.video.reformatter import VideoReformatter

from swaprtc.casting import CastFace, SessionCasting
from swaprtc.engine import Casting, Engine, FrameProcessor
from swaprtc.observability.metrics import Metrics
from swaprtc.rtc.encoders import EncodedFrame, RealtimeEncoder
from swaprtc.rtc.mailbox import MailboxClosed, NewestMailbox
from swaprtc.rtc.privacy import hide_faces, hide_frame
from swaprtc.rtc.stats import StreamStats
from swaprtc.types import Face, SourceFace, SwapOptions, SwapResult

log = logging.getLogger(__name__)

R = TypeVar("R")
VIDEO_TIME_BASE = Fraction(1, 90000)
DEFAULT_DEADLINE_S = 0.2  # longest a frame waits for its swap before going out with faces hidden
DEFAULT_GUARD_TIMEOUT_S = 0.3  # longest the hide path waits for a face detection


class InferencePool:
    """The executors model work runs on, shared by every session of one app.

    ``inference`` runs swaps and source preparation; ``guard`` runs the quick detections used to
    hide faces, so hiding never waits behind a slow swap. Both get ``threads`` workers: several
    sessions hiding at once (a slow engine) must not queue behind one guard thread and time out.
    """

    def __init__(self, threads: int = 1) -> None:
        self.threads = max(1, threads)
        self.inference = ThreadPoolExecutor(self.threads, thread_name_prefix="swaprtc-infer")
        self.guard = ThreadPoolExecutor(self.threads, thread_name_prefix="swaprtc-guard")
        self._local = threading.local()

    def to_bgr(self, frame: VideoFrame) -> np.ndarray:
        """``frame`` as a BGR array, with this thread's own converter.

        ``VideoFrame.to_ndarray`` converts with a converter kept on the frame: two threads
        converting one frame at once (the swap job and the guard, when the frame in flight misses
        its deadline) share it and deadlock (measured with PyAV 18). Each thread keeps its own."""
        reformatter = getattr(self._local, "reformatter", None)
        if reformatter is None:
            reformatter = self._local.reformatter = VideoReformatter()
        return reformatter.reformat(frame, format="bgr24").to_ndarray()

    def run(self, fn: Callable[..., R], *args: Any) -> asyncio.Future[R]:
        return asyncio.get_running_loop().run_in_executor(self.inference, partial(fn, *args))

    def run_guard(self, fn: Callable[..., R], *args: Any) -> asyncio.Future[R]:
        return asyncio.get_running_loop().run_in_executor(self.guard, partial(fn, *args))

    def shutdown(self) -> None:
        self.inference.shutdown(wait=False, cancel_futures=True)
        self.guard.shutdown(wait=False, cancel_futures=True)


@dataclass
class StreamControl:
    """Live, per-session inputs of the track: the source identity and the swap options.

    ``source`` is what unmapped faces get; ``casting`` (when the session maps sources to people)
    decides per face and records who it saw in ``last``.
    """

    source: SourceFace | None = None
    options: SwapOptions = field(default_factory=SwapOptions)
    generation: int = 0  # bumped on every source change, so the track resets tracking state
    casting: Casting | None = None

    def set_source(self, source: SourceFace | None) -> None:
        self.source = source
        self.generation += 1


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def describe_people(
    faces: tuple[Face, ...], unswapped: tuple[Face, ...], cast: tuple[CastFace, ...], shape: tuple[int, ...]
) -> tuple[list[dict[str, object]], str | None]:
    """The stats ``people`` list (boxes in 0..1 of the frame) and why faces are hidden, if any."""
    h, w = shape[:2]
    hidden = {id(f) for f in unswapped}
    by_face = {id(c.face): c for c in cast}
    # Frames between the engine's keyframes carry the moved faces, new objects of the same tracks
    # as the faces the casting last saw.
    by_track = {c.face.track: c for c in cast if c.face.track is not None}
    people: list[dict[str, object]] = []
    left_out = failed = 0
    for face in faces:
        c = by_face.get(id(face)) or (by_track.get(face.track) if face.track is not None else None)
        x1, y1, x2, y2 = (float(v) for v in face.bbox[:4])
        box = [round(min(max(x1 / w, 0.0), 1.0), 4), round(min(max(y1 / h, 0.0), 1.0), 4)]
        box += [round(min(max(x2 / w, 0.0), 1.0), 4), round(min(max(y2 / h, 0.0), 1.0), 4)]
        state = "hidden" if id(face) in hidden else "swapped"
        if state == "hidden":
            if c is not None and c.source is not None:
                failed += 1
            else:
                left_out += 1
        people.append(
            {
                "person": c.person if c is not None else None,
                "box": box,
                "source": c.source if c is not None and state == "swapped" else None,
                "state": state,
            }
        )
    reasons = []
    if left_out:
        reasons.append(
            f"{_plural(left_out, 'face')} hidden: only the largest is swapped"
            " (turn on swap every face, or click a face to give it a source)"
        )
    if failed:
        reasons.append(f"{_plural(failed, 'face')} hidden: too small, turned away or at the edge to swap")
    return people, "; ".join(reasons) or None


@dataclass(frozen=True)
class Arrival:
    frame: VideoFrame
    at: float  # time.monotonic() when the reader received it


def to_video_frame(bgr: np.ndarray, pts: int | None, time_base: Fraction = VIDEO_TIME_BASE) -> VideoFrame:
    """BGR → yuv420p VideoFrame with one cvtColor; odd sizes are cropped to even (4:2:0 needs it)."""
    h, w = bgr.shape[:2]
    if h % 2 or w % 2:
        bgr = bgr[: h - h % 2, : w - w % 2]
    yuv = np.asarray(cv2.cvtColor(np.ascontiguousarray(bgr), cv2.COLOR_BGR2YUV_I420), dtype=np.uint8)
    frame = VideoFrame.from_numpy_buffer(yuv, format="yuv420p")
    frame.pts = pts
    frame.time_base = time_base
    return frame


class _Handoff:
    """Who may still encode a swap job's frame: the job itself (``claim``, on its thread) only
    until the event loop gives up waiting for it (``abandon``); a claimed job is waited for."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = "open"

    def claim(self) -> bool:
        with self._lock:
            if self._state == "open":
                self._state = "claimed"
            return self._state == "claimed"

    def abandon(self) -> bool:
        """True when the job will not encode (now or ever); False: it already is encoding."""
        with self._lock:
            if self._state == "open":
                self._state = "abandoned"
            return self._state == "abandoned"


@dataclass(frozen=True)
class Produced:
    """What one swap job hands back to the event loop: the frame to send (yuv420p, no pts yet),
    or that frame already encoded when the job was allowed to encode it."""

    frame: VideoFrame
    result: SwapResult
    unswapped: tuple[Face, ...]  # faces pixelated in ``frame``
    shape: tuple[int, ...]
    encoded: EncodedFrame | None = None


def faces_to_hide(result: SwapResult) -> tuple[Face, ...]:
    """Faces the engine found and did not replace. Faces found, none replaced and none listed: an
    engine not filling ``unswapped`` still must not show them, so all of them are hidden."""
    if result.swapped == 0 and result.faces and not result.unswapped:
        return tuple(result.faces)
    return tuple(result.unswapped)


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
        metrics: Metrics | None = None,
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
        self.metrics = metrics if metrics is not None else Metrics()
        self.deadline_s = deadline_s
        self.guard_timeout_s = guard_timeout_s
        self._mailbox: NewestMailbox[Arrival] = NewestMailbox()
        self._reader: asyncio.Task[None] | None = None
        self._job: asyncio.Future[Produced] | None = None
        self._job_arrival: Arrival | None = None
        self._job_handoff: _Handoff | None = None
        self._encoder: RealtimeEncoder | None = None
        self._generation_seen = control.generation
        self._last_faces: tuple[Face, ...] = ()  # every face of the latest engine result
        self._discarded = 0  # frames taken from the mailbox but never sent (a late swap went instead)
        self._last_pts: int | None = None
        self._clock_start: float | None = None

    def encode_with(self, encoder: RealtimeEncoder) -> None:
        """Encode swapped frames in the swap job with ``encoder``, the one this track's sender
        holds; ``recv`` then returns ``EncodedFrame`` values for them."""
        self._encoder = encoder

    # --- reading -------------------------------------------------------------------------------
    def _ensure_reader(self) -> None:
        if self._reader is None:
            self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        try:
            while True:
                frame = await self._source.recv()
                if not isinstance(frame, VideoFrame):  # a video track yields only VideoFrames
                    continue
                self.stats.frames_in += 1
                self.metrics.frames_in.inc()
                self._mailbox.put(Arrival(frame, time.monotonic()))
                self._count_dropped()
        except MediaStreamError:
            pass
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("reading the remote track failed")
        finally:
            self._mailbox.close()

    def _count_dropped(self) -> None:
        dropped = self._mailbox.dropped + self._discarded
        if dropped > self.stats.dropped:
            self.metrics.frames_dropped.inc(dropped - self.stats.dropped)
        self.stats.dropped = dropped

    def _hidden_frame(self) -> None:
        self.stats.hidden_frames += 1
        self.metrics.frames_hidden.inc()

    def stop(self) -> None:
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()
        self._mailbox.close()
        # The sender lets go of its encoder (and its codec's buffers) when it stops; so does this.
        self._encoder = None
        super().stop()

    async def close(self) -> None:
        """Stop, then wait for the reader task and the job in flight to finish, so nothing of this
        track (frames, the processor) outlives the session that owned it."""
        self.stop()
        reader, self._reader = self._reader, None
        if reader is not None:
            await asyncio.gather(reader, return_exceptions=True)
        job, self._job, self._job_arrival = self._job, None, None
        self._abandon()
        if job is not None:
            # An executor job cannot be interrupted; it is short (one frame), so wait for it.
            await asyncio.gather(job, return_exceptions=True)

    # --- producing -----------------------------------------------------------------------------
    async def recv(self) -> VideoFrame | EncodedFrame:  # type: ignore[override]
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
            self._no_people()
        else:
            out, shown = await self._produce(arrival, pts, time_base)
            if isinstance(out, EncodedFrame):
                self._count_out(shown)
                return out
            frame = out
            frame.pts, frame.time_base = pts, time_base
        self._count_out(shown)
        return frame

    def _count_out(self, shown: Arrival) -> None:
        self.stats.frames_out += 1
        self.metrics.frames_out.inc()
        latency_s = time.monotonic() - shown.at
        self.stats.record_latency(latency_s * 1000.0)
        self.metrics.frame_latency_seconds.observe(latency_s)

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

    def _abandon(self) -> bool:
        """Stop the job in flight from encoding; False when it already is (then it must be sent)."""
        handoff, self._job_handoff = self._job_handoff, None
        return handoff is None or handoff.abandon()

    async def _produce(
        self, arrival: Arrival, pts: int, time_base: Fraction
    ) -> tuple[VideoFrame | EncodedFrame, Arrival]:
        """The frame to send for ``arrival`` (encoded when the job could encode it) and the
        arrival it shows (a late swap shows an earlier one). Pixel work (conversions, pixelation)
        and the encode run in the executor jobs, not here."""
        control = self._control
        source = control.source
        if source is None:
            # No swap requested: pass through. An abandoned job is dropped once it finishes.
            if self._job is not None and self._job.done():
                self._job = None
            self._no_people()
            return arrival.frame, arrival
        if self._job is None:
            reset = control.generation != self._generation_seen
            self._generation_seen = control.generation
            handoff = self._job_handoff = _Handoff() if self._encoder is not None else None
            self._job = self._pool.run(
                self._process,
                arrival.frame,
                source,
                control.options,
                reset,
                self._timestamp_s(arrival),
                control.casting,
                (pts, time_base, handoff),
            )
            self._job.add_done_callback(_retrieve)
            self._job_arrival = arrival
        job = self._job
        try:
            done, _ = await asyncio.wait({job}, timeout=self.deadline_s)
            if not done and not self._abandon():
                # The swap finished just now and its frame is being encoded: it goes out.
                done, _ = await asyncio.wait({job})
        except BaseException:
            self._abandon()  # recv is cancelled (track stopping): the job must not encode
            raise
        if not done:
            # Warm-up or an engine slower than the deadline: the swap keeps running (it will not
            # encode), this frame goes out with its faces hidden.
            return await self._hidden(arrival.frame, "faces hidden while the swap catches up"), arrival
        job_arrival = self._job_arrival or arrival
        self._job = self._job_arrival = self._job_handoff = None
        try:
            produced = job.result()
        except Exception:
            self.stats.engine_errors += 1
            self.metrics.engine_errors.inc()
            if self.stats.engine_errors <= 3 or self.stats.engine_errors % 100 == 0:
                log.warning("engine failed on a frame (%d so far)", self.stats.engine_errors, exc_info=True)
            return await self._hidden(arrival.frame, "faces hidden: the swap failed on this frame"), arrival
        if job_arrival is not arrival:
            # A late swap of an earlier frame finished: it goes out, this frame never will.
            self._discarded += 1
            self._count_dropped()
        result, unswapped = produced.result, produced.unswapped
        # Engines report every face they found, so a result without faces is trusted: no face to hide.
        self._last_faces = result.faces
        self.stats.faces = len(result.faces)
        self.stats.record_stages(result.timings_ms)
        self.metrics.observe_stages(result.timings_ms)
        if result.swapped > 0:
            self.stats.swapped_frames += 1
            self.metrics.frames_swapped.inc()
        elif unswapped:
            self._hidden_frame()
        self.stats.hidden = len(unswapped)
        casting = control.casting
        cast = casting.last if isinstance(casting, SessionCasting) else ()
        self.stats.people, self.stats.hidden_reason = describe_people(
            result.faces, unswapped, cast, produced.shape
        )
        return (produced.encoded or produced.frame), job_arrival

    @staticmethod
    def _timestamp_s(arrival: Arrival) -> float:
        """The frame's presentation time in seconds; its arrival time when it has no pts."""
        frame = arrival.frame
        if frame.pts is None:
            return arrival.at
        return float(frame.pts * (frame.time_base or VIDEO_TIME_BASE))

    def _no_people(self) -> None:
        self.stats.faces = self.stats.hidden = 0
        self.stats.people, self.stats.hidden_reason = [], None

    def _process(
        self,
        frame: VideoFrame,
        source: SourceFace,
        options: SwapOptions,
        reset: bool,
        timestamp_s: float,
        casting: Casting | None,
        sending: tuple[int, Fraction, _Handoff | None],
    ) -> Produced:
        # Runs on the inference executor; one job per track at a time, so the processor (not
        # thread-safe) is only ever used by one thread at once. The decoded frame is converted,
        # swapped, pixelated where needed and converted back here (and encoded, when the event
        # loop still waits for it): none of it on the event loop.
        image = self._pool.to_bgr(frame)
        if reset:
            self._processor.reset()
        result = self._processor.process(image, source, options, timestamp_s, casting)
        unswapped = faces_to_hide(result)
        # ``result.frame`` is this job's own array (our conversion, or the engine's copy of it):
        # a partly swapped frame (one-face mode, a face too small to swap) hides the others in place.
        out = hide_faces(result.frame, unswapped, copy=False) if unswapped else result.frame
        frame_out = to_video_frame(out, None)
        pts, time_base, handoff = sending
        encoder = self._encoder
        if encoder is None or handoff is None or not handoff.claim():
            return Produced(frame_out, result, unswapped, image.shape)
        frame_out.pts, frame_out.time_base = pts, time_base
        return Produced(frame_out, result, unswapped, image.shape, encoder.encode_frame(frame_out))

    async def _hidden(self, frame: VideoFrame, reason: str) -> VideoFrame:
        out = await self._hide_all(frame)
        self.stats.hidden_reason = reason if self.stats.hidden else None
        return out

    async def _hide_all(self, frame: VideoFrame) -> VideoFrame:
        """``frame`` with every face hidden: detected now, plus where the engine last saw faces.

        The quick detection may miss a face the engine found (a smaller or cheaper detector, a
        turned head), so the latest engine result's faces are always hidden too; detections made
        here are not remembered, so a miss cannot erase a face the engine reported. Conversion,
        detection and pixelation run together on the guard executor.
        """
        self._hidden_frame()
        last_faces = self._last_faces
        try:
            out, detected = await asyncio.wait_for(
                self._pool.run_guard(self._detect_and_hide, frame, last_faces), self.guard_timeout_s
            )
        except Exception:
            # Detection failed or is too slow: no face position can be trusted. Rare, so the
            # whole-frame pixelation runs right here.
            log.debug("detection for hiding failed; hiding the whole frame", exc_info=True)
            self.stats.hidden = max(1, len(last_faces))
            return to_video_frame(hide_frame(self._pool.to_bgr(frame)), None)
        self.stats.hidden = max(detected, len(last_faces))
        return out

    def _detect_and_hide(self, frame: VideoFrame, last_faces: tuple[Face, ...]) -> tuple[VideoFrame, int]:
        image = self._pool.to_bgr(frame)
        detected = self._engine.detect(image)
        faces = [*detected, *last_faces]
        if faces:
            hide_faces(image, faces, copy=False)
        return to_video_frame(image, None), len(detected)
