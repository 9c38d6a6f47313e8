"""``swaprtc swap``: run an engine over an image or a video file.

Videos are decoded and re-encoded with PyAV at the same size and frame rate; the audio stream is
copied packet for packet (no re-encode) when the output container can hold its codec, and
re-encoded to the container's default audio codec otherwise (AAC cannot go into WebM). Output goes
to a hidden partial file next to the target and is renamed into place only when complete.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter
from tqdm import tqdm

from swaprtc.engine import Engine, FrameProcessor
from swaprtc.errors import BadImageError, NoFaceError, SwapRTCError, UnsupportedFormatError
from swaprtc.label import Labeler, labeler_for, labelled
from swaprtc.provenance import ContentCredentials, credentials_for
from swaprtc.settings import Settings
from swaprtc.types import SourceFace, SwapOptions

log = logging.getLogger(__name__)

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
VIDEO_FORMATS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}
VIDEO_CODECS = {".mp4": "libx264", ".mov": "libx264", ".mkv": "libx264", ".webm": "libvpx-vp9"}
# Near-transparent quality: the background must come out as it went in, up to codec noise.
ENCODER_OPTIONS = {"libx264": {"crf": "18", "preset": "veryfast"}, "libvpx-vp9": {"crf": "24", "b": "0"}}


class UnreadableFileError(SwapRTCError):
    """A file is missing, unreadable, or not decodable as what its name says."""

    code = "unreadable_file"


@dataclass(frozen=True)
class SwapStats:
    kind: str  # image | video
    frames: int
    frames_swapped: int  # frames where at least one face was replaced
    width: int
    height: int
    fps: float | None
    audio: str  # none | copied | re-encoded (...)
    seconds: float


def media_kind(path: Path, role: str) -> str:
    ext = path.suffix.lower()
    if ext in IMAGE_EXTS:
        return "image"
    if ext in VIDEO_FORMATS:
        return "video"
    supported = ", ".join(IMAGE_EXTS + tuple(VIDEO_FORMATS))
    raise UnsupportedFormatError(
        f"{role} {path}: unsupported file type {ext or '(none)'!r}; use one of {supported}"
    )


def check_paths(source: Path, target: Path, output: Path) -> str:
    """Validate paths before any model is loaded; returns the target's kind."""
    for role, path in (("source", source), ("target", target)):
        if not path.is_file():
            raise UnreadableFileError(f"{role} file not found: {path}")
        if not os.access(path, os.R_OK):
            raise UnreadableFileError(f"{role} file is not readable: {path}")
    kind = media_kind(target, "target")
    out_kind = media_kind(output, "output")
    if out_kind != kind:
        raise UnsupportedFormatError(
            f"the target is an {kind} but the output {output} names a {out_kind} format"
        )
    if output.resolve() == target.resolve():
        raise UnsupportedFormatError("the output must not overwrite the target")
    return kind


def read_image(path: Path, role: str) -> np.ndarray:
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise UnreadableFileError(f"cannot read {role} file {path}: {exc}") from exc
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise BadImageError(f"{role} file {path} is not a readable image")
    return image


def _partial_path(output: Path) -> Path:
    return output.with_name(f".{output.stem}.partial{output.suffix}")


def swap_file(
    source_path: Path,
    target_path: Path,
    output_path: Path,
    engine: Engine,
    options: SwapOptions,
    progress: bool = True,
    labeler: Labeler | None = None,
    credentials: ContentCredentials | None = None,
) -> SwapStats:
    """Swap the face of ``source_path`` into ``target_path`` (image or video) and write ``output_path``.

    With a ``labeler``, every output frame with a swapped face carries the "AI-generated" label;
    with ``credentials``, the output carries a signed C2PA manifest saying it is AI-generated
    (for the types c2pa can embed into: see ``provenance.SIGNABLE``; others are written without).
    """
    source_path, target_path, output_path = Path(source_path), Path(target_path), Path(output_path)
    kind = check_paths(source_path, target_path, output_path)
    try:
        source = engine.prepare_source(read_image(source_path, "source"))
    except NoFaceError as exc:
        raise NoFaceError(f"source {source_path}: {exc.message}") from exc
    output_path.parent.mkdir(parents=True, exist_ok=True)
    partial = _partial_path(output_path)
    stream = labelled(engine.open_stream(), labeler)
    started = time.perf_counter()
    try:
        if kind == "image":
            stats = _swap_image(source, target_path, partial, stream, options)
        else:
            stats = _swap_video(
                source,
                target_path,
                partial,
                output_path.suffix.lower(),
                stream,
                options,
                progress,
            )
        if credentials is not None and credentials.supports(output_path):
            credentials.sign(partial, output_path)
        else:
            os.replace(partial, output_path)
    finally:
        partial.unlink(missing_ok=True)
    return SwapStats(**{**stats.__dict__, "seconds": time.perf_counter() - started})


def _swap_image(
    source: SourceFace, target: Path, partial: Path, stream: FrameProcessor, options: SwapOptions
) -> SwapStats:
    frame = read_image(target, "target")
    result = stream.process(frame, source, options)
    ok, buf = cv2.imencode(partial.suffix, result.frame)
    if not ok:
        raise UnsupportedFormatError(f"cannot encode an image as {partial.suffix}")
    buf.tofile(str(partial))
    h, w = frame.shape[:2]
    return SwapStats("image", 1, int(result.swapped > 0), w, h, None, "none", 0.0)


def _open_input(target: Path) -> av.container.InputContainer:
    try:
        return av.open(str(target), "r")
    except (av.error.FFmpegError, OSError) as exc:
        raise UnreadableFileError(f"target {target} is not a readable video: {exc}") from exc


def _swap_video(
    source: SourceFace,
    target: Path,
    partial: Path,
    ext: str,
    stream: FrameProcessor,
    options: SwapOptions,
    progress: bool,
) -> SwapStats:
    inp = _open_input(target)
    try:
        if not inp.streams.video:
            raise UnreadableFileError(f"target {target} has no video stream")
        vin = inp.streams.video[0]
        vin.thread_type = "AUTO"
        ain = inp.streams.audio[0] if inp.streams.audio else None
        width, height = vin.codec_context.width, vin.codec_context.height
        rate = vin.average_rate or vin.guessed_rate or Fraction(30, 1)
        out = av.open(str(partial), "w", format=VIDEO_FORMATS[ext])
        try:
            vout = cast(av.VideoStream, out.add_stream(VIDEO_CODECS[ext], rate=rate))
            vout.width, vout.height = width, height
            # x264 cannot do 4:2:0 at odd sizes; 4:4:4 keeps the size exact instead of cropping.
            vout.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
            vout.options = dict(ENCODER_OPTIONS[VIDEO_CODECS[ext]])
            aout, audio = _audio_stream(ain, out)
            frames, swapped = _transcode(
                inp, vin, ain, out, vout, aout, rate, source, stream, options, progress, target.name
            )
        finally:
            out.close()
    except av.error.FFmpegError as exc:
        raise UnreadableFileError(f"failed while decoding {target}: {exc}") from exc
    finally:
        inp.close()
    return SwapStats("video", frames, swapped, width, height, float(rate), audio, 0.0)


def _audio_stream(
    ain: av.AudioStream | None, out: av.container.OutputContainer
) -> tuple[av.AudioStream | None, str]:
    """Copy the audio codec when the container takes it, else re-encode to the container's default."""
    if ain is None:
        return None, "none"
    name = ain.codec_context.name
    if name in out.supported_codecs:
        return out.add_stream_from_template(ain), "copied"
    codec = out.default_audio_codec
    # Opus only runs at a few fixed rates; 48 kHz is its native one.
    rate = 48000 if "opus" in codec else ain.codec_context.sample_rate
    aout = cast(av.AudioStream, out.add_stream(codec, rate=rate))
    aout.layout = ain.codec_context.layout
    log.info("audio codec %s cannot go into this container: re-encoding it as %s", name, codec)
    return aout, f"re-encoded ({name} to {codec})"


def frame_time(frame: av.VideoFrame) -> float | None:
    """A decoded frame's presentation time in seconds; None when the stream gives it no timestamp."""
    if frame.time is not None:
        return float(frame.time)
    if frame.pts is not None and frame.time_base is not None:
        return float(frame.pts * frame.time_base)
    return None


def _transcode(
    inp: av.container.InputContainer,
    vin: av.VideoStream,
    ain: av.AudioStream | None,
    out: av.container.OutputContainer,
    vout: av.VideoStream,
    aout: av.AudioStream | None,
    rate: Fraction,
    source: SourceFace,
    stream: FrameProcessor,
    options: SwapOptions,
    progress: bool,
    label: str,
) -> tuple[int, int]:
    frames = swapped = 0
    last_pts = -1
    streams = [vin] + ([ain] if ain is not None and aout is not None else [])
    copy_audio = aout is not None and ain is not None and aout.codec_context.name == ain.codec_context.name
    # One kept converter: ``frame.to_ndarray(format=...)`` builds a new swscale context per frame
    # (0.22 vs 0.06 ms at 480p, docs/BENCHMARKS.md "The media path around the engine").
    to_bgr = VideoReformatter()
    with tqdm(total=vin.frames or None, unit="frame", desc=label, disable=not progress) as bar:
        for packet in inp.demux(*streams):
            if aout is not None and packet.stream.index == ain.index:  # type: ignore[union-attr]
                if packet.dts is None:  # demuxer flush packet
                    continue
                if copy_audio:
                    packet.stream = aout
                    out.mux(packet)
                else:
                    for aframe in packet.decode():
                        if not isinstance(aframe, av.AudioFrame):
                            continue
                        aframe.pts = None  # the encoder restamps; its resampler changes the timing
                        out.mux(aout.encode(aframe))
                continue
            for frame in packet.decode():
                if not isinstance(frame, av.VideoFrame):  # the video stream yields only VideoFrames
                    continue
                # The frame's own time, so tracking smooths over real time at any frame rate.
                picture = to_bgr.reformat(frame, format="bgr24").to_ndarray()
                result = stream.process(picture, source, options, timestamp_s=frame_time(frame))
                new = av.VideoFrame.from_ndarray(result.frame, format="bgr24")
                # Keep each frame at its own time (variable frame rate survives), strictly increasing.
                pts = round(frame.time * rate) if frame.time is not None else last_pts + 1
                new.pts = last_pts = max(pts, last_pts + 1)
                new.time_base = Fraction(1, 1) / rate
                out.mux(vout.encode(new))
                frames += 1
                swapped += int(result.swapped > 0)
                bar.update(1)
        out.mux(vout.encode(None))
        if aout is not None and not copy_audio:
            out.mux(aout.encode(None))
    return frames, swapped


def offline_settings(settings: Settings) -> Settings:
    """One file is one stream: no batching across sessions, and so no live swap deadline on model
    calls (on a CPU a neural swap takes seconds; every face must still be swapped, however slowly)."""
    return replace(settings, batch_window_ms=0)


def run_swap(args: argparse.Namespace, settings: Settings) -> int:
    source, target, output = Path(args.source), Path(args.target), Path(args.output)
    if not 0.0 <= args.strength <= 1.0:
        raise SwapRTCError(f"--strength must be between 0 and 1, got {args.strength}", code="bad_argument")
    check_paths(source, target, output)  # fail fast, before models load
    credentials = credentials_for(settings.c2pa, settings.c2pa_cert, settings.c2pa_key)
    from swaprtc.factory import build_engine

    engine = build_engine(offline_settings(settings))
    options = SwapOptions(many_faces=args.many_faces, strength=args.strength, enhance=args.enhance)
    labeler = labeler_for(settings.label, settings.label_position, settings.label_opacity)
    stats = swap_file(
        source,
        target,
        output,
        engine,
        options,
        progress=not args.no_progress,
        labeler=labeler,
        credentials=credentials,
    )
    fps = f", {stats.fps:g} fps" if stats.fps else ""
    print(
        f"wrote {output} ({stats.kind}, {stats.width}x{stats.height}{fps}, {stats.frames} frame(s), "
        f"faces swapped in {stats.frames_swapped}, audio {stats.audio}) in {stats.seconds:.1f} s"
    )
    print(f"content credentials: {describe_credentials(credentials, output)}")
    return 0


def describe_credentials(credentials: ContentCredentials | None, output: Path) -> str:
    if credentials is None:
        return "none (--c2pa off)"
    if not credentials.supports(output):
        return (
            f"none: C2PA cannot be embedded into {output.suffix} files (use .mp4, .mov, .jpg, .png or .webp)"
        )
    if credentials.identity.self_signed:
        return (
            "C2PA manifest signed with a throw-away self-signed certificate (untrusted, but tamper-evident)"
        )
    return "C2PA manifest signed with the operator's certificate"
