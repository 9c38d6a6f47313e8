"""``swaprtc bench --suite session_cost``: the server CPU of one session, per frame and step.

A session's frame goes through: SRTP + RTP in (``rtp_in``), VP8 decode (``decode``), decoded
frame to BGR (``to_bgr``), the engine (``engine``), pixelation of faces left unswapped (none here),
BGR to I420 (``to_i420``), encode (``encode``, aiortc's encoder with its payload packetiser) and
RTP + SRTP out (``rtp_out``). Each step's CPU time (``time.process_time``: all threads of this
process, so multi-threaded codecs count fully) is measured on a real stream: a face photo drifting
like a webcam picture, encoded as a browser would send it. ``before`` uses aiortc's stock
encoders, ``after`` this server's per-connection real-time encoders (rtc/encoders.py), run
interleaved frame by frame. ``cores_at_30fps`` = the step sum × 30 frames/s: what one 30 fps
session costs, without the event loop's own overhead (the capacity suite measures that too).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import cv2
import numpy as np
from aiortc.codecs import h264, vpx
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtp import RtpPacket
from av import VideoFrame
from pylibsrtp import Policy, Session

from swaprtc.engine import Engine
from swaprtc.rtc.encoders import Bitrates, RealtimeH264Encoder, RealtimeVp8Encoder
from swaprtc.rtc.track import to_video_frame
from swaprtc.types import SourceFace, SwapOptions

RESOLUTIONS = {"480p": (640, 480), "720p": (1280, 720)}
BROWSER_BITRATE = 1_500_000  # what the answer's x-google-start-bitrate asks the browser for
CLOCK = 90000
SRTP_KEY = bytes(range(30))  # AES_CM_128_HMAC_SHA1_80: 16 key + 14 salt bytes


def _srtp_pair() -> tuple[Session, Session]:
    out = Session(policy=Policy(key=SRTP_KEY, ssrc_type=Policy.SSRC_ANY_OUTBOUND))
    back = Session(policy=Policy(key=SRTP_KEY, ssrc_type=Policy.SSRC_ANY_INBOUND))
    return out, back


def _packets(payloads: list[bytes], timestamp: int, seq: int) -> list[RtpPacket]:
    return [
        RtpPacket(
            payload_type=96,
            marker=int(i == len(payloads) - 1),
            sequence_number=(seq + i) & 0xFFFF,
            timestamp=timestamp,
            ssrc=1234,
            payload=p,
        )
        for i, p in enumerate(payloads)
    ]


def browser_stream(frames: list[np.ndarray]) -> list[list[bytes]]:
    """Each frame as the SRTP packets a browser would send (VP8 at the bitrate we ask for)."""
    encoder = vpx.Vp8Encoder()
    encoder.target_bitrate = BROWSER_BITRATE
    protect, _ = _srtp_pair()
    seq, out = 0, []
    for i, image in enumerate(frames):
        frame = to_video_frame(image, i * CLOCK // 30, Fraction(1, CLOCK))
        payloads, timestamp = encoder.encode(frame)
        packets = _packets(payloads, timestamp, seq)
        seq += len(packets)
        out.append([protect.protect(p.serialize()) for p in packets])
    return out


class _Steps:
    def __init__(self) -> None:
        self.ms: dict[str, list[float]] = {}

    @contextlib.contextmanager
    def timing(self, name: str) -> Iterator[None]:
        t0 = time.process_time()
        yield
        self.ms.setdefault(name, []).append((time.process_time() - t0) * 1000.0)


def one_session(
    engine: Engine,
    source: SourceFace,
    frames: list[np.ndarray],
    codec: str,
    warmup: int = 10,
) -> dict[str, Any]:
    """Median CPU ms per step over ``frames``, for stock and real-time encoders side by side."""
    wire = browser_stream(frames)
    limits = Bitrates(500_000, 1_500_000, 4_000_000)
    stock: dict[str, Any] = {"vp8": vpx.Vp8Encoder, "h264": h264.H264Encoder}
    ours: dict[str, Any] = {"vp8": RealtimeVp8Encoder, "h264": RealtimeH264Encoder}
    encoders = {"before": stock[codec](), "after": ours[codec](limits)}
    encoders["before"].target_bitrate = limits.start
    processor = engine.open_stream()
    decoder = vpx.Vp8Decoder()
    _, unprotect = _srtp_pair()
    protect = {label: _srtp_pair()[0] for label in encoders}  # SRTP refuses a repeated index
    seq = dict.fromkeys(encoders, 0)
    steps = {label: _Steps() for label in encoders}
    shared = _Steps()
    options = SwapOptions()
    for i, packets in enumerate(wire):
        with shared.timing("rtp_in"):
            rtp = [RtpPacket.parse(unprotect.unprotect(p)) for p in packets]
            data = b"".join(vpx.vp8_depayload(p.payload) for p in rtp)
        with shared.timing("decode"):
            frame = decoder.decode(JitterFrame(data, rtp[0].timestamp))[0]
        assert isinstance(frame, VideoFrame)
        with shared.timing("to_bgr"):
            image = frame.to_ndarray(format="bgr24")
        with shared.timing("engine"):
            result = processor.process(image, source, options, i / 30.0)
        with shared.timing("to_i420"):
            out = to_video_frame(result.frame, None)
        out.pts, out.time_base = i * CLOCK // 30, Fraction(1, CLOCK)
        for label, encoder in encoders.items():
            with steps[label].timing("encode"):
                payloads, ts = encoder.encode(out)
            packets_out = _packets(payloads, ts, seq[label])
            seq[label] += len(packets_out)
            with steps[label].timing("rtp_out"):
                for packet in packets_out:
                    protect[label].protect(packet.serialize())
    report: dict[str, Any] = {"codec": codec, "frames": len(frames) - warmup}
    common = {k: statistics.median(v[warmup:]) for k, v in shared.ms.items()}
    # Steps whose cost varies from frame to frame (the engine's keyframes, the detector, codec
    # keyframes) make medians undercount: what a session costs is the mean.
    common_mean = {k: statistics.fmean(v[warmup:]) for k, v in shared.ms.items()}
    for label, step in steps.items():
        per_step = {**common, **{k: statistics.median(v[warmup:]) for k, v in step.ms.items()}}
        per_step_mean = {**common_mean, **{k: statistics.fmean(v[warmup:]) for k, v in step.ms.items()}}
        total, total_mean = sum(per_step.values()), sum(per_step_mean.values())
        report[label] = {
            "ms_per_frame": {k: round(v, 3) for k, v in per_step.items()},
            "mean_ms_per_frame": {k: round(v, 3) for k, v in per_step_mean.items()},
            "total_ms": round(total, 2),
            "total_mean_ms": round(total_mean, 2),
            "cores_at_30fps": round(total_mean * 30 / 1000.0, 3),
            "cores_at_30fps_from_medians": round(total * 30 / 1000.0, 3),
        }
    report["engine"] = {
        key: getattr(processor, key)
        for key in ("keyframes", "mesh_calls", "detector_calls")
        if hasattr(processor, key)
    }
    return report


def bench_session_cost(
    engine: Engine, source: SourceFace, photo: np.ndarray, frames: int, resolutions: list[str]
) -> dict[str, Any]:
    from swaprtc.embedded.bench import live_frames

    cv_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # one session's work, as a worker's executor thread does it
    try:
        out: dict[str, Any] = {"cpus": os.cpu_count()}
        for label in resolutions:
            size = RESOLUTIONS[label]
            stream = live_frames(photo, max(frames, 20) + 10, size)
            out[label] = {codec: one_session(engine, source, stream, codec) for codec in ("vp8", "h264")}
        return out
    finally:
        cv2.setNumThreads(cv_threads)
