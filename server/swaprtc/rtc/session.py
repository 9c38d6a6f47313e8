"""Sessions: one per browser tab. A session owns its peer connection, source identity (memory
only), live options, stats and FrameProcessor. The SessionManager (stored on the app, no
globals) creates, finds and retires them: on connectionState failed/closed, DataChannel silence,
never connecting, and shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.sdp import SessionDescription

from swaprtc.casting import SessionCasting
from swaprtc.engine import Engine, FrameProcessor
from swaprtc.errors import SwapRTCError
from swaprtc.http.errors import RetryLaterError
from swaprtc.label import Labeler, labelled
from swaprtc.observability.logs import session_context, set_session
from swaprtc.observability.metrics import Metrics
from swaprtc.rtc.control import Assign, Unassign, error, handle_message
from swaprtc.rtc.encoders import Bitrates, use_realtime_encoder
from swaprtc.rtc.ice import IceServer, rtc_configuration
from swaprtc.rtc.offer_check import BadOfferError, check_offer_attributes
from swaprtc.rtc.sdp import add_bitrate_hints, prefer_codec
from swaprtc.rtc.sources import NamedSource, SourceBook, data_url
from swaprtc.rtc.stats import StreamStats
from swaprtc.rtc.track import InferencePool, StreamControl, SwapTrack
from swaprtc.settings import Settings

log = logging.getLogger(__name__)

NEVER_CONNECTED_S = 300.0  # a page may upload a source long before the camera starts
# A session with neither a source nor a peer connection costs nothing to recreate (the page does so
# by itself on unknown_session), so anonymous POST /api/session calls only hold a slot briefly.
UNUSED_S = 60.0
# An offer that has not led to a connection by then never will (ICE and DTLS take seconds, also
# through TURN); until then the session holds a capacity slot.
CONNECTING_S = 30.0
JANITOR_PERIOD_S = 1.0
CAPACITY_RETRY_AFTER_S = 10.0


class UnknownSessionError(SwapRTCError):
    code = "unknown_session"
    http_status = 404


class TooManySessionsError(RetryLaterError):
    """The server is at capacity (503) or this client holds too many unconnected sessions (429)."""

    code = "too_many_sessions"
    http_status = 503

    def __init__(self, message: str, *, retry_after_s: float, http_status: int = 503) -> None:
        super().__init__(message, retry_after_s=retry_after_s)
        self.http_status = http_status


class AlreadyConnectedError(SwapRTCError):
    code = "already_connected"
    http_status = 409


@dataclass(frozen=True)
class RtcPolicy:
    """What every peer connection is configured with (from Settings, resolved once)."""

    ice_servers: tuple[IceServer, ...]
    codec: str
    min_bitrate: int
    start_bitrate: int
    max_bitrate: int
    deadline_s: float | None = None  # SwapTrack deadline override (tests)
    labeler: Labeler | None = None  # the "AI-generated" label, None when the operator turned it off


def validate_offer(sdp: str) -> None:
    """Reject what aiortc would accept silently or fail on obscurely: malformed ICE credentials
    or fingerprints, no video, unparsable."""
    check_offer_attributes(sdp)
    try:
        parsed = SessionDescription.parse(sdp)
    except Exception as exc:
        raise BadOfferError(f"the offer SDP could not be parsed: {exc.__class__.__name__}") from None
    if not any(m.kind == "video" for m in parsed.media):
        raise BadOfferError("the offer has no video section")


class Session:
    def __init__(
        self,
        session_id: str,
        engine: Engine,
        pool: InferencePool,
        now: float,
        metrics: Metrics | None = None,
        client: str = "",
    ) -> None:
        self.id = session_id
        self.client = client  # the address that created it (per-client limits)
        self.engine = engine
        self.pool = pool
        self.metrics = metrics if metrics is not None else Metrics()
        self.created_at = now
        self.control = StreamControl()
        self.sources = SourceBook()  # named source photos, memory only
        self.casting = SessionCasting()
        self.stats = StreamStats()
        self.show_stats = False
        self.processor: FrameProcessor | None = None  # opened for each track
        self.pc: RTCPeerConnection | None = None
        self.track: SwapTrack | None = None
        self.channel: RTCDataChannel | None = None
        self.last_message_at: float | None = None
        self.connected = False
        self.offered_at: float | None = None  # when the current peer connection was offered
        self.closed = False
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- signalling ----------------------------------------------------------------------------
    async def accept_offer(
        self,
        sdp: str,
        policy: RtcPolicy,
        on_gone: Callable[[Session], None],
        on_change: Callable[[Session], None] = lambda _session: None,
    ) -> RTCSessionDescription:
        if self.pc is not None:
            raise AlreadyConnectedError("this session is already connected; create a new session")
        validate_offer(sdp)
        pc = RTCPeerConnection(rtc_configuration(policy.ice_servers))
        self.pc = pc
        self.offered_at = time.monotonic()
        # Codec preferences must be on the transceiver before the offer is applied.
        transceiver = pc.addTransceiver("video", direction="sendrecv")
        prefer_codec(transceiver, policy.codec)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video" and self.track is None:
                kwargs = {"deadline_s": policy.deadline_s} if policy.deadline_s else {}
                # Each track gets its own processor: a stopped track's last job may still be
                # running on the old one (processors are not thread-safe), and a new connection
                # starts tracking afresh anyway.
                self.processor = self.engine.open_stream()
                self.track = SwapTrack(
                    track,
                    self.engine,
                    labelled(self.processor, policy.labeler),
                    self.control,
                    self.pool,
                    self.stats,
                    metrics=self.metrics,
                    **kwargs,
                )
                sender = pc.addTrack(self.track)
                # Real-time encoder settings and this server's bitrate limits, for this sender only.
                encoder = use_realtime_encoder(
                    sender,
                    policy.codec,
                    Bitrates(policy.min_bitrate, policy.start_bitrate, policy.max_bitrate),
                )
                if encoder is not None and encoder.encodes_ahead:
                    # Swapped frames are encoded in their swap job (no second executor hop).
                    self.track.encode_with(encoder)
            else:
                # Unused media still has to be drained: aiortc queues it without bound.
                self._spawn(_drain(track))

        @pc.on("datachannel")
        def on_datachannel(channel: RTCDataChannel) -> None:
            if channel.label != "control":
                return
            self.channel = channel
            self.last_message_at = time.monotonic()
            channel.on("message", self._on_message)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            log.info("session %s: connection %s", self.id[:8], pc.connectionState)
            if pc.connectionState == "connected":
                self.connected = True
                on_change(self)
            elif pc.connectionState in ("failed", "closed"):
                on_gone(self)

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            if self.track is None:
                raise BadOfferError("the offer sends no video")
            await pc.setLocalDescription(await pc.createAnswer())
        except SwapRTCError:
            await self._drop_pc()
            raise
        except Exception as exc:
            await self._drop_pc()
            log.info("session %s: offer rejected: %r", self.id[:8], exc)
            raise BadOfferError(
                f"the offer could not be applied ({exc}); this server sends {policy.codec.upper()} video"
            ) from None
        local = pc.localDescription
        answer = add_bitrate_hints(local.sdp, policy.min_bitrate, policy.start_bitrate, policy.max_bitrate)
        return RTCSessionDescription(sdp=answer, type=local.type)

    async def _drop_pc(self) -> None:
        pc, self.pc = self.pc, None
        track, self.track = self.track, None
        if track is not None:
            await track.close()
        if pc is not None:
            try:
                await pc.close()
            except Exception:
                # aiortc can fail to close a connection whose offer was only half applied.
                log.debug("session %s: closing the peer connection failed", self.id[:8], exc_info=True)

    # --- sources -------------------------------------------------------------------------------
    def put_source(self, entry: NamedSource) -> None:
        self.sources.put(entry)
        self._sources_changed()

    def remove_source(self, name: str | None) -> None:
        self.sources.remove(name)
        self._sources_changed()

    def _sources_changed(self) -> None:
        self.casting.set_sources(self.sources.prepared())
        self.control.casting = self.casting if self.sources.entries else None
        self.control.set_source(self.casting.default_source)

    def sources_json(self) -> dict[str, Any]:
        return {
            "sources": [
                {"name": e.name, "selected": e.selected, "thumbnail": data_url(e.source.thumbnail_jpeg)}
                for e in self.sources.entries.values()
            ],
            "default": self.casting.state.default_name,
            "assignments": [
                {"person": p, "source": n} for p, n in sorted(self.casting.state.assignments.items())
            ],
        }

    # --- DataChannel ---------------------------------------------------------------------------
    def _on_message(self, message: str | bytes) -> None:
        self.last_message_at = time.monotonic()
        result = handle_message(message, self.control.options, self.show_stats)
        self.control.options = result.options
        self.show_stats = result.show_stats
        for reply in result.replies:
            self.send(reply)
        if result.command is not None:
            self.send(self.run_command(result.command))

    def run_command(self, command: Assign | Unassign) -> dict[str, Any]:
        if isinstance(command, Unassign):
            if not self.casting.unassign(command.person):
                return error("not_assigned", f"person {command.person} has no source mapped")
            return {"type": "unassigned", "person": command.person}
        if command.source not in self.sources.entries:
            return error("unknown_source", f"no source named {command.source!r}: upload it first")
        person = self.person_at(command.x, command.y)
        if person is None:
            return error("no_face_here", "no face at that point of the video")
        self.casting.assign(person, command.source)
        return {"type": "assigned", "source": command.source, "person": person}

    def person_at(self, x: float, y: float) -> int | None:
        """The person whose face (in the latest processed frame) contains the point, else the
        nearest one within half a face width; the smallest face wins where faces overlap."""
        candidates: list[tuple[float, float, int]] = []  # (distance in face sizes, area, person)
        for entry in self.stats.people:
            person, box = entry.get("person"), entry.get("box")
            if not isinstance(person, int) or not isinstance(box, list):
                continue
            x1, y1, x2, y2 = (float(v) for v in box)
            w, h = max(x2 - x1, 1e-6), max(y2 - y1, 1e-6)
            distance = max(max(x1 - x, 0.0, x - x2) / w, max(y1 - y, 0.0, y - y2) / h)
            if distance <= 0.5:
                candidates.append((distance, w * h, person))
        return min(candidates)[2] if candidates else None

    def send(self, message: dict[str, Any]) -> None:
        channel = self.channel
        if channel is not None and channel.readyState == "open":
            with contextlib.suppress(Exception):
                channel.send(json.dumps(message))

    def send_stats(self) -> None:
        self.send(self.stats.snapshot(self.engine.name))

    # --- lifecycle -----------------------------------------------------------------------------
    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def expired(
        self,
        now: float,
        idle_s: float,
        never_connected_s: float,
        unused_s: float = UNUSED_S,
        connecting_s: float = CONNECTING_S,
    ) -> str | None:
        """Why this session should be retired now (a ``metrics.END_REASONS`` code), or None."""
        if not self.connected:
            age = now - self.created_at
            if self.pc is None and self.control.source is None and age > unused_s:
                return "unused"  # no source, no connection
            if age > never_connected_s:
                return "never_connected"
            if self.pc is not None and self.offered_at is not None and now - self.offered_at > connecting_s:
                return "never_connected"  # offered, but ICE/DTLS never completed
        if (
            self.channel is not None
            and self.last_message_at is not None
            and now - self.last_message_at > idle_s
        ):
            return "idle"  # the control channel fell silent
        return None

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.sources.remove(None)  # forget the photos and identities now, not when garbage collected
        self.casting.set_sources({})
        self.control.casting = None
        self.control.set_source(None)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        # Awaited, not only cancelled: a task still running holds the track (and its frames).
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._drop_pc()
        self.processor = None
        self.channel = None


async def _drain(track: MediaStreamTrack) -> None:
    with contextlib.suppress(MediaStreamError):
        while True:
            await track.recv()


class SessionManager:
    def __init__(
        self,
        engine: Engine,
        pool: InferencePool,
        settings: Settings,
        policy: RtcPolicy,
        metrics: Metrics | None = None,
        *,
        never_connected_s: float = NEVER_CONNECTED_S,
        unused_s: float = UNUSED_S,
        id_prefix: str = "",
    ) -> None:
        self.engine = engine
        # A worker process names itself in every session id it makes, so the supervisor can route
        # each request about the session to it (swaprtc.workers.routing).
        self.id_prefix = id_prefix
        self.pool = pool
        self.settings = settings
        self.policy = policy
        self.metrics = metrics if metrics is not None else Metrics()
        self.closing = False  # shutdown started: not ready for new sessions
        self.never_connected_s = never_connected_s
        self.unused_s = unused_s
        self.sessions: dict[str, Session] = {}
        self._janitor: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[bool]] = set()

    # Capacity counts sessions that hold a peer connection (connecting or connected). Sessions
    # that only exist (and maybe hold a source) cost little; they are bounded separately, in
    # total and per client address, so a few bare POST /api/session calls cannot lock people out.
    def active(self) -> int:
        return sum(1 for s in self.sessions.values() if s.pc is not None)

    def has_capacity(self) -> bool:
        return self.active() < self.settings.max_sessions

    def _check_capacity(self) -> None:
        if not self.has_capacity():
            raise TooManySessionsError(
                f"the server is at its limit of {self.settings.max_sessions} live sessions; try again later",
                retry_after_s=CAPACITY_RETRY_AFTER_S,
            )

    def create(self, client: str = "") -> Session:
        self._check_capacity()
        # Not connected yet, whether offered or not: one address cannot hold more of these.
        pending = [s for s in self.sessions.values() if not s.connected]
        if len(pending) >= self.settings.max_pending_sessions:
            raise TooManySessionsError(
                "too many sessions are waiting to connect; try again later",
                retry_after_s=CAPACITY_RETRY_AFTER_S,
            )
        if sum(1 for s in pending if s.client == client) >= self.settings.max_pending_per_client:
            raise TooManySessionsError(
                f"your address already has {self.settings.max_pending_per_client} sessions that "
                "are not connected; connect or delete one first",
                retry_after_s=self.unused_s,
                http_status=429,
            )
        session = Session(
            self.id_prefix + secrets.token_urlsafe(18),
            self.engine,
            self.pool,
            time.monotonic(),
            self.metrics,
            client,
        )
        self.sessions[session.id] = session
        self._count()
        set_session(session.id)  # the rest of this request logs with the session's id
        log.info("session %s created (%d open)", session.id[:8], len(self.sessions))
        return session

    def _count(self, _changed: Session | None = None) -> None:
        gauge = self.metrics.sessions
        gauge.labels("open").set(len(self.sessions))
        gauge.labels("connected").set(sum(1 for s in self.sessions.values() if s.connected))

    def get(self, session_id: str | None) -> Session:
        session = self.sessions.get(session_id or "")
        if session is None:
            raise UnknownSessionError("unknown or expired session; create a new one")
        set_session(session.id)
        return session

    async def connect(self, session: Session, sdp: str) -> RTCSessionDescription:
        if session.pc is None:
            self._check_capacity()
        return await session.accept_offer(sdp, self.policy, self._gone, self._count)

    def _gone(self, session: Session) -> None:
        task = asyncio.ensure_future(self.remove(session.id, "connection_ended"))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def remove(self, session_id: str, reason: str) -> bool:
        """End a session; ``reason`` is one of ``metrics.END_REASONS``. False if it was gone."""
        session = self.sessions.pop(session_id, None)
        if session is None:
            return False
        self._count()
        self.metrics.session_ended(reason)
        with session_context(session_id):
            log.info("session %s removed: %s (%d open)", session_id[:8], reason, len(self.sessions))
            await session.close()
        return True

    async def sweep(self, now: float | None = None) -> list[str]:
        now = time.monotonic() if now is None else now
        removed = []
        for session in list(self.sessions.values()):
            reason = session.expired(now, self.settings.session_idle_s, self.never_connected_s, self.unused_s)
            if reason:
                await self.remove(session.id, reason)
                removed.append(session.id)
        return removed

    async def _run_janitor(self) -> None:
        while True:
            await asyncio.sleep(JANITOR_PERIOD_S)
            try:
                await self.sweep()
                self._send_stats()
            except Exception:
                log.exception("session janitor failed")

    def _send_stats(self) -> None:
        # Its own frame: a loop variable in the janitor's long-lived coroutine would keep the last
        # session (its peer connection, track and frames) alive after it was removed.
        for session in self.sessions.values():
            session.send_stats()

    def start(self) -> None:
        if self._janitor is None:
            self._janitor = asyncio.ensure_future(self._run_janitor())

    async def close_all(self) -> None:
        self.closing = True
        if self._janitor is not None:
            self._janitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._janitor
            self._janitor = None
        await asyncio.gather(*(self.remove(sid, "shutdown") for sid in list(self.sessions)))
        for task in list(self._closing):
            with contextlib.suppress(Exception):
                await task
