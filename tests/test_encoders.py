"""Real-time encoders per sender: our options reach libvpx/libx264, bitrate limits are the
connection's own, and nothing process-wide changes."""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import av
import cv2
import numpy as np
from aiortc.codecs import get_encoder
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder, VpxPayloadDescriptor
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, pack_remb_fci
from av import VideoFrame
from swaprtc.rtc.app import SESSIONS, create_app
from swaprtc.rtc.encoders import SENDER_ENCODER_ATTR, Bitrates, RealtimeH264Encoder, RealtimeVp8Encoder
from swaprtc.settings import Settings

from tests.engine_doubles import PAINT_BGR, FixedFaceDetector, PaintEngine
from tests.rtc_client import SwapClient, SyntheticCamera, serve_in_process

LIMITS = Bitrates(600_000, 1_200_000, 2_500_000)
FACE = (slice(80, 165), slice(192, 260))  # rows, cols inside the astronaut's face


def is_painted(image: np.ndarray) -> bool:
    return bool(np.abs(image[FACE].astype(np.int16) - np.array(PAINT_BGR, np.int16)).mean() < 20)


def frame(image: np.ndarray, i: int) -> VideoFrame:
    out = VideoFrame.from_numpy_buffer(cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420), format="yuv420p")
    out.pts, out.time_base = i * 3000, Fraction(1, 90000)
    return out


def test_vp8_options_and_limits_are_per_encoder(astronaut_bgr: np.ndarray) -> None:
    ours, theirs = RealtimeVp8Encoder(LIMITS), Vp8Encoder()
    assert ours.target_bitrate == 1_200_000
    for i in range(3):
        payloads, _ = ours.encode(frame(astronaut_bgr, i))
        assert payloads
        theirs.encode(frame(astronaut_bgr, i))
    assert ours.codec.applied_options["cpu-used"] == "-10"
    assert ours.codec.applied_options["noise-sensitivity"] == "0"
    assert ours.codec.applied_options["static-thresh"] == "500"  # near-static blocks are skipped
    assert ours.codec.thread_count == 1
    assert ours.codec.applied_options["deadline"] == "realtime"  # aiortc's own options stay
    assert ours.codec.bit_rate == 1_200_000
    assert not hasattr(theirs.codec, "applied_options")  # aiortc's own encoder is left alone
    ours.target_bitrate = 10_000_000  # REMB asks for more than this server allows
    assert ours.target_bitrate == 2_500_000
    ours.target_bitrate = 1
    assert ours.target_bitrate == 600_000


def test_aiortc_cannot_give_our_encoder_more_threads() -> None:
    """aiortc sets VP8's thread_count from the frame size and the machine's cores (2+ threads from
    720p on 3+ cores): one session's encoder keeps one thread whatever the machine."""
    ours = RealtimeVp8Encoder(LIMITS)
    ours.codec = av.CodecContext.create("libvpx", "w")
    ours.codec.thread_count = 4  # what aiortc does on a many-core machine
    assert ours.codec.thread_count == 1


def test_h264_runs_ultrafast_zerolatency(astronaut_bgr: np.ndarray) -> None:
    ours, theirs = RealtimeH264Encoder(LIMITS), H264Encoder()
    ours_out = b"".join(p for i in range(3) for p in ours.encode(frame(astronaut_bgr, i))[0])
    theirs_out = b"".join(p for i in range(3) for p in theirs.encode(frame(astronaut_bgr, i))[0])
    # libx264 writes its settings into the stream: ultrafast means no subpel refinement at all.
    assert b"subme=0" in ours_out and b"subme=0" not in theirs_out and b"subme=" in theirs_out
    # ... and one thread, no sliced threads (libx264 alone picks ~1.5 threads per core).
    assert re.search(rb" threads=1 lookahead_threads=1 sliced_threads=0 ", ours_out), ours_out[:600]
    plain = get_encoder(RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=96))
    assert type(plain) is H264Encoder  # aiortc's factory is untouched


async def test_a_connection_sends_with_the_realtime_encoder(astronaut_bgr: np.ndarray) -> None:
    app = create_app(Settings(), PaintEngine(FixedFaceDetector()))
    async with serve_in_process(app) as base, SwapClient(base) as client:
        await client.connect(SyntheticCamera(astronaut_bgr, 30))
        session = next(iter(app[SESSIONS].sessions.values()))
        assert session.pc is not None
        encoders = [getattr(s, SENDER_ENCODER_ATTR) for s in session.pc.getSenders()]
        assert [type(e) for e in encoders] == [RealtimeVp8Encoder]
        assert encoders[0].codec.applied_options["cpu-used"] == "-10"  # it is the one that encodes
        assert encoders[0].codec.applied_options["static-thresh"] == "500"
        assert encoders[0].codec.thread_count == 1
        assert encoders[0].target_bitrate >= 500_000  # the server's limits, not aiortc's 250k floor
    assert len(client.received) >= 1


def watch_keyframes(receiver: Any) -> list[bool]:
    """For every VP8 frame the client's receiver gets, whether it is a keyframe (read from the RTP
    payload: decoded frames do not say). Instruments this one test receiver."""
    seen: list[bool] = []
    handle = receiver._handle_rtp_packet

    async def watched(packet: Any, arrival_time_ms: int) -> None:
        with contextlib.suppress(ValueError):
            descriptor, data = VpxPayloadDescriptor.parse(packet.payload)
            if descriptor.partition_start and descriptor.partition_id == 0 and data:
                seen.append(not data[0] & 1)  # VP8 frame tag: bit 0 clear = keyframe
        await handle(packet, arrival_time_ms=arrival_time_ms)

    receiver._handle_rtp_packet = watched
    return seen


async def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_swaps_are_encoded_in_the_job_and_pli_and_remb_still_work(astronaut_bgr: np.ndarray) -> None:
    """Through a real aiortc client: swapped frames are encoded on the swap job's thread (not on
    aiortc's default executor), a PLI from the client brings a keyframe at once, and a REMB from
    the client sets the bitrate the encoder really encodes at, within this server's limits."""
    app = create_app(Settings(), PaintEngine(FixedFaceDetector()))
    async with serve_in_process(app) as base, SwapClient(base) as client:
        await client.create_session()
        ok, png = cv2.imencode(".png", astronaut_bgr)
        assert ok and (await client.upload_source(png.tobytes()))[0] == 200
        await client.connect(SyntheticCamera(astronaut_bgr, 30))
        assert client.pc is not None
        receiver = client.pc.getTransceivers()[0].receiver
        # Only this test's RTCP: the client's own bitrate estimate would restart the encoder
        # (a keyframe) whenever it moves.
        receiver._RTCRtpReceiver__remote_bitrate_estimator = None
        keyframes = watch_keyframes(receiver)
        session = next(iter(app[SESSIONS].sessions.values()))
        assert session.pc is not None
        (sender,) = session.pc.getSenders()
        encoder = getattr(sender, SENDER_ENCODER_ATTR)
        threads: list[str] = []
        encode = encoder.encode

        def watched(frame: VideoFrame, force_keyframe: bool = False) -> tuple[list[bytes], int]:
            threads.append(threading.current_thread().name)
            return encode(frame, force_keyframe)

        encoder.encode = watched
        # Settled: 15 frames in a row without a keyframe.
        await wait_for(lambda: len(keyframes) >= 15 and not any(keyframes[-15:]))
        assert threads and all(name.startswith("swaprtc-infer") for name in threads), set(threads)

        asked = len(keyframes)
        await receiver._send_rtcp_pli(sender._ssrc)
        await wait_for(lambda: len(keyframes) >= asked + 8)
        assert any(keyframes[asked : asked + 8]), keyframes[asked:]

        async def remb(bitrate: int) -> None:
            fci = pack_remb_fci(bitrate, [sender._ssrc])
            await receiver._send_rtcp(RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=fci))

        assert encoder.codec.bit_rate == 1_500_000  # the start bitrate
        await remb(800_000)
        await wait_for(lambda: encoder.codec.bit_rate == 800_000)
        await remb(50_000_000)  # more than this server allows
        await wait_for(lambda: encoder.codec.bit_rate == 4_000_000)
        assert all(name.startswith("swaprtc-infer") for name in threads), set(threads)
        stats = [m for m in client.messages if m.get("type") == "stats"]
    assert client.received and is_painted(client.received[-1].image)
    assert not stats or stats[-1]["hidden_frames"] < stats[-1]["frames_out"]
