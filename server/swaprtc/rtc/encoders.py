"""Real-time video encoders for one peer connection, with its own bitrate limits.

aiortc builds each sender's encoder with fixed options (VP8 ``cpu-used -6``; H264 without a
preset, i.e. libx264's ``medium``) and reads bitrate limits from module constants. Measured here
(docs/RTC.md, "Codec and bitrate"): VP8 ``cpu-used -10`` without the temporal denoiser
(``noise-sensitivity 0``; aiortc uses 4) encodes 480p/720p ~43% cheaper at no PSNR loss (-12
loses 1.1 dB, -16 loses 7 dB: visibly worse); H264 ``preset ultrafast`` + ``tune zerolatency`` is
~6-8x cheaper than the default at equal PSNR. On top of that (docs/BENCHMARKS.md, "One session's
server CPU"): VP8 ``static-thresh 500`` (aiortc: 1) skips the near-static blocks of a webcam
picture's background, ~5-12 % less encode CPU for 0.1-0.3 dB PSNR; and one encoder thread
per session (libx264 otherwise starts ~1.5 threads per core, and aiortc gives VP8 two or more
threads from 720p on a machine with 3+ cores): extra threads shorten one frame's encode but cost
CPU to coordinate, and a server full of sessions already keeps every core busy.

Scope: the encoder object is handed to one ``RTCRtpSender`` (``use_realtime_encoder``), so nothing
process-wide changes: other senders, other apps in the process and aiortc's own defaults are left
alone. aiortc has no public hook for this; the sender keeps its encoder in a private attribute that
it fills only when empty, and that is where ours goes. If a future aiortc renames it, the sender
falls back to aiortc's own encoder and a warning is logged (tests/test_encoders.py catches it).

Encoding ahead: the swap job can encode its frame itself (``encode_frame``) and hand the sender an
``EncodedFrame``; aiortc's sender packs data that is not an av ``Frame`` with ``encoder.pack``
instead of encoding it on its default executor, which saves one thread hand-off and one event-loop
wake-up per frame. Keyframe requests (PLI/FIR) then have to reach the encoder wherever it runs:
the sender's keyframe hook is pointed at ``request_keyframe`` (this sender only), and every encode
(ours or aiortc's) makes a keyframe while a request is pending. REMB needs nothing: aiortc sets
``target_bitrate`` on this same encoder object, and the next encode applies it.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

from aiortc import RTCRtpSender
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder

log = logging.getLogger(__name__)

# On top of aiortc's realtime deadline, no lag and CBR. No temporal denoiser: what we encode was
# decoded from the browser's stream (its encoder already smoothed the camera noise) and then swapped.
# static-thresh: blocks that barely changed are coded as skipped (a webcam's background); 700+
# starts to cost visible detail (-0.7 dB at 480p, measured), 1000 loses 1.3 dB.
VP8_OPTIONS = {"cpu-used": "-10", "noise-sensitivity": "0", "static-thresh": "500"}
H264_OPTIONS = {"preset": "ultrafast", "tune": "zerolatency"}
ENCODER_THREADS = 1
SENDER_ENCODER_ATTR = "_RTCRtpSender__encoder"
SENDER_KEYFRAME_HOOK = "_send_keyframe"  # what the sender calls on a PLI or FIR


@dataclass(frozen=True)
class EncodedFrame:
    """One frame already encoded by a connection's encoder: RTP payloads and RTP timestamp."""

    payloads: list[bytes]
    timestamp: int  # 90 kHz ticks, from the frame's pts


@dataclass(frozen=True)
class Bitrates:
    """Encoder limits in bits/s; REMB from the browser moves the target between min and max."""

    min: int
    start: int
    max: int

    def clamp(self, bitrate: int) -> int:
        return max(self.min, min(int(bitrate), self.max))


class _WithOptions:
    """aiortc's codec context, with our options laid over the ones aiortc sets on it."""

    def __init__(self, context: Any, overrides: Mapping[str, str], threads: int | None) -> None:
        object.__setattr__(self, "_context", context)
        object.__setattr__(self, "_overrides", overrides)
        object.__setattr__(self, "_threads", threads)
        # What the codec was opened with (libav consumes the options dict when it opens).
        object.__setattr__(self, "applied_options", {})
        if threads is not None:
            # The codec opens on its first frame, so this still decides its threads; aiortc's
            # own thread_count (VP8) is replaced below.
            context.thread_count = threads

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "options":
            value = {**value, **self._overrides}
            object.__setattr__(self, "applied_options", dict(value))
        elif name == "thread_count" and self._threads is not None:
            value = self._threads
        setattr(self._context, name, value)


class _Realtime:
    """Our options on the codec context aiortc creates, and this connection's bitrate limits."""

    options: ClassVar[Mapping[str, str]] = {}
    threads: ClassVar[int | None] = ENCODER_THREADS  # None: aiortc's (and libav's) choice

    def __init__(self, bitrates: Bitrates) -> None:
        self._bitrates = bitrates
        self._bitrate = bitrates.start
        self._context: Any = None
        # PLI/FIR count (written on the event loop) and how many of them a keyframe answered
        # (written by whichever thread encodes; one at a time): no lock, and no request is lost.
        self._keyframes_asked = 0
        self._keyframes_made = 0
        # Whether the sender's keyframe requests reach ``request_keyframe``: only then may frames
        # be encoded ahead of the sender (``use_realtime_encoder`` sets it).
        self.encodes_ahead = False
        super().__init__()
        self.target_bitrate = bitrates.start

    def request_keyframe(self) -> None:
        """A PLI or FIR arrived (event loop): the next frame encoded, by any thread, is a keyframe."""
        self._keyframes_asked += 1

    def encode(self, frame: Any, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        asked = self._keyframes_asked
        if asked != self._keyframes_made:
            self._keyframes_made = asked
            force_keyframe = True
        payloads, timestamp = super().encode(frame, force_keyframe)  # type: ignore[misc]
        return payloads, timestamp

    def encode_frame(self, frame: Any) -> EncodedFrame:
        """Encode ``frame`` (pts and time_base set) for the sender to pack as it is."""
        payloads, timestamp = self.encode(frame)
        return EncodedFrame(payloads, timestamp)

    def pack(self, data: Any) -> tuple[list[bytes], int]:
        if isinstance(data, EncodedFrame):
            return data.payloads, data.timestamp
        payloads, timestamp = super().pack(data)  # type: ignore[misc]
        return payloads, timestamp

    @property
    def codec(self) -> Any:
        return self._context

    @codec.setter
    def codec(self, context: Any) -> None:
        self._context = None if context is None else _WithOptions(context, self.options, self.threads)

    @property
    def target_bitrate(self) -> int:
        return self._bitrate

    @target_bitrate.setter
    def target_bitrate(self, bitrate: int) -> None:
        self._bitrate = self._bitrates.clamp(bitrate)
        if hasattr(self, "_Vp8Encoder__target_bitrate"):
            # aiortc sizes the VP8 rate-control buffer from its private copy of the bitrate.
            setattr(self, "_Vp8Encoder__target_bitrate", self._bitrate)  # noqa: B010


class RealtimeVp8Encoder(_Realtime, Vp8Encoder):
    options = VP8_OPTIONS


class RealtimeH264Encoder(_Realtime, H264Encoder):
    options = H264_OPTIONS


ENCODERS: dict[str, type[RealtimeVp8Encoder] | type[RealtimeH264Encoder]] = {
    "vp8": RealtimeVp8Encoder,
    "h264": RealtimeH264Encoder,
}


RealtimeEncoder = RealtimeVp8Encoder | RealtimeH264Encoder


def _request_keyframe(encoder: weakref.ref[RealtimeEncoder]) -> None:
    alive = encoder()
    if alive is not None:
        alive.request_keyframe()


def use_realtime_encoder(sender: RTCRtpSender, codec: str, bitrates: Bitrates) -> RealtimeEncoder | None:
    """Give ``sender`` our encoder for ``codec`` (the only video codec the server negotiates) and
    return it; None, leaving aiortc's encoder in place, where that is not possible. Its
    ``encodes_ahead`` says whether the sender's keyframe requests were routed to it."""
    if getattr(sender, SENDER_ENCODER_ATTR, "missing") is not None:
        log.warning("this aiortc version does not take a per-sender encoder: using its defaults")
        return None
    encoder = ENCODERS[codec.lower()](bitrates)
    setattr(sender, SENDER_ENCODER_ATTR, encoder)
    if callable(getattr(type(sender), SENDER_KEYFRAME_HOOK, None)):
        # This sender's keyframe requests go to the encoder, which answers them on whichever
        # thread encodes next (an instance attribute: other senders and the class are untouched).
        # A weak reference: the sender drops its encoder when it stops, the codec goes with it.
        setattr(sender, SENDER_KEYFRAME_HOOK, partial(_request_keyframe, weakref.ref(encoder)))
        encoder.encodes_ahead = True
    else:
        log.warning("this aiortc version has no keyframe hook: frames are encoded by aiortc")
    return encoder
