"""Codec choice and the bitrate hints in the answer (encoder limits: rtc/encoders.py)."""

from __future__ import annotations

import re

from aiortc import RTCRtpSender, RTCRtpTransceiver

CODEC_MIME = {"vp8": "video/VP8", "h264": "video/H264"}


def codec_mime(codec: str) -> str:
    try:
        return CODEC_MIME[codec.lower()]
    except KeyError:
        raise ValueError(f"unknown codec {codec!r}: use vp8 or h264") from None


def prefer_codec(transceiver: RTCRtpTransceiver, codec: str) -> None:
    """Restrict the transceiver to ``codec`` (plus its RTX) BEFORE the remote offer is applied:
    aiortc negotiates codecs in setRemoteDescription, so filtering afterwards is too late."""
    mime = codec_mime(codec).lower()
    caps = RTCRtpSender.getCapabilities("video")
    chosen = [c for c in caps.codecs if c.mimeType.lower() in (mime, "video/rtx")]
    transceiver.setCodecPreferences(chosen)


def add_bitrate_hints(sdp: str, min_bps: int, start_bps: int, max_bps: int) -> str:
    """Add Chrome's ``x-google-{min,start,max}-bitrate`` (kbps) to every VP8/H264 payload of the
    video section, so the browser sends the server a sharp picture instead of ~250 kbps."""
    lo, start, hi = sorted((min_bps // 1000, start_bps // 1000, max_bps // 1000))
    hint = f"x-google-min-bitrate={lo};x-google-start-bitrate={start};x-google-max-bitrate={hi}"
    lines = sdp.split("\r\n") if "\r\n" in sdp else sdp.split("\n")
    sep = "\r\n" if "\r\n" in sdp else "\n"
    video_pts: set[str] = set()
    in_video = False
    for line in lines:
        if line.startswith("m="):
            in_video = line.startswith("m=video")
        elif in_video:
            m = re.match(r"a=rtpmap:(\d+) (VP8|H264)/", line, re.IGNORECASE)
            if m:
                video_pts.add(m.group(1))
    out: list[str] = []
    with_fmtp: set[str] = set()
    for line in lines:
        m = re.match(r"a=fmtp:(\d+) (.*)", line)
        if m and m.group(1) in video_pts and "x-google-" not in line:
            line = f"{line};{hint}"
            with_fmtp.add(m.group(1))
        out.append(line)
    # Payloads without an fmtp line get one right after their rtpmap.
    result: list[str] = []
    for line in out:
        result.append(line)
        m = re.match(r"a=rtpmap:(\d+) ", line)
        if m and m.group(1) in video_pts and m.group(1) not in with_fmtp:
            result.append(f"a=fmtp:{m.group(1)} {hint}")
    return sep.join(result)
