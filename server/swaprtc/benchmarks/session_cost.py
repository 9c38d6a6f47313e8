"""``swaprtc bench --suite session_cost``: the server CPU of one session, per frame and step.

A session's frame goes through: SRTP + RTP in (``rtp_in``), VP8 decode (``decode``), decoded
frame to BGR (``to_bgr``), the engine (``engine``), pixelation of faces left unswapped (none here),
BGR to I420 (``to_i420``), encode (``encode``, aiortc's encoder with its payload packetiser) and
RTP + SRTP out (``rtp_out``). Each step's CPU time (``time.process_time``: all threads of this
process, so multi-threaded codecs count fully) is measured on a real stream: a face photo drifting
like a webcam picture, encoded as a browser would send it. Three encoders run interleaved frame by
frame on the same frames: ``aiortc`` (aiortc's stock encoder), ``before`` (this server's
per-connection encoder as it was before issue 8's second round: VP8 ``cpu-used -10`` without the
denoiser, H264 ultrafast/zerolatency, aiortc's and libav's thread counts) and ``after`` (today's
rtc/encoders.py: also VP8 ``static-thresh 500`` and one encoder thread). ``decode_threads``
compares aiortc's VP8 decoder (libav's automatic thread count) with a one-thread decoder on the
same packets. ``cores_at_30fps`` = the step sum × 30 frames/s. ``psnr_db`` and ``ssim`` (median,
luma SSIM) compare each encoder's output, decoded again, with the picture it was given.

The step table misses what happens between the steps: aiortc's per-packet Python work (ICE
datagrams, DTLS/SRTP, RTCP, jitter buffer, NACK and bitrate estimation), the asyncio wake-ups
between the event loop and the threads, and OpenCV's thread pool. ``whole_process`` measures that:
a real ``swaprtc serve`` process (embedded engine) with one real aiortc client in its own process
streaming a face at 30 fps (``camera``: drifting by default, or still or talking, as the capacity
clients stream it), the server's CPU time over a window divided by the frames the client
received; ``before`` runs the server with OpenCV's default thread pool (one thread per core,
as the server did before ``--pixel-threads``), ``after`` with today's default, alternating
server runs (rounds) so that machine load hits both alike. With ``baseline`` (a git commit of this
repository), ``before`` is instead that commit's server code (its ``server/`` tree, extracted to a
temporary folder and put first on the server's PYTHONPATH) and ``after`` this checkout's, both with
today's settings: a before/after of any change to the serving path, in one interleaved run. With
py-spy installed (a dev tool) it also names the server's threads and gives each one's share.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

import cv2
import numpy as np
from aiortc.codecs import h264, vpx
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtp import RtpPacket
from av import VideoFrame
from pylibsrtp import Policy, Session

from swaprtc.engine import Engine
from swaprtc.rtc.encoders import Bitrates, RealtimeH264Encoder, RealtimeVp8Encoder
from swaprtc.rtc.track import InferencePool, to_video_frame
from swaprtc.settings import Settings
from swaprtc.types import SourceFace, SwapOptions

if TYPE_CHECKING:  # capacity imports this module
    from swaprtc.benchmarks.capacity import Detect

RESOLUTIONS = {"480p": (640, 480), "720p": (1280, 720)}
BROWSER_BITRATE = 1_500_000  # what the answer's x-google-start-bitrate asks the browser for
CLOCK = 90000
SRTP_KEY = bytes(range(30))  # AES_CM_128_HMAC_SHA1_80: 16 key + 14 salt bytes


class PreviousVp8Encoder(RealtimeVp8Encoder):
    """rtc/encoders.py's VP8 encoder before static-thresh and the one-thread rule."""

    options: ClassVar[dict[str, str]] = {"cpu-used": "-10", "noise-sensitivity": "0"}
    threads = None


class PreviousH264Encoder(RealtimeH264Encoder):
    """rtc/encoders.py's H264 encoder before the one-thread rule (libx264 picked its threads)."""

    threads = None


def ssim_luma(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two BGR pictures' luma (Gaussian window 11, sigma 1.5: Wang et al. 2004)."""
    x = cv2.cvtColor(a, cv2.COLOR_BGR2GRAY).astype(np.float64)
    y = cv2.cvtColor(b, cv2.COLOR_BGR2GRAY).astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(v: np.ndarray) -> np.ndarray:
        return np.asarray(cv2.GaussianBlur(v, (11, 11), 1.5))

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    return float(((2 * mx * my + c1) * (2 * cxy + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2))).mean())


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
    """Median CPU ms per step over ``frames``, for the three encoders side by side."""
    wire = browser_stream(frames)
    limits = Bitrates(500_000, 1_500_000, 4_000_000)
    stock: dict[str, Any] = {"vp8": vpx.Vp8Encoder, "h264": h264.H264Encoder}
    previous: dict[str, Any] = {"vp8": PreviousVp8Encoder, "h264": PreviousH264Encoder}
    ours: dict[str, Any] = {"vp8": RealtimeVp8Encoder, "h264": RealtimeH264Encoder}
    encoders = {"aiortc": stock[codec](), "before": previous[codec](limits), "after": ours[codec](limits)}
    encoders["aiortc"].target_bitrate = limits.start
    processor = engine.open_stream()
    decoder = vpx.Vp8Decoder()
    one_thread = vpx.Vp8Decoder()
    one_thread.codec.thread_count = 1
    _, unprotect = _srtp_pair()
    protect = {label: _srtp_pair()[0] for label in encoders}  # SRTP refuses a repeated index
    seq = dict.fromkeys(encoders, 0)
    steps = {label: _Steps() for label in encoders}
    # Each encoder's output decoded again (not timed): what the browser shows, against its input.
    redecoders: dict[str, Any] = {
        label: vpx.Vp8Decoder() if codec == "vp8" else h264.H264Decoder() for label in encoders
    }
    depayload = vpx.vp8_depayload if codec == "vp8" else h264.h264_depayload
    quality: dict[str, dict[str, list[float]]] = {label: {"psnr": [], "ssim": []} for label in encoders}
    shared = _Steps()
    options = SwapOptions()
    pool = InferencePool(1)  # only its converter is used
    for i, packets in enumerate(wire):
        with shared.timing("rtp_in"):
            rtp = [RtpPacket.parse(unprotect.unprotect(p)) for p in packets]
            data = b"".join(vpx.vp8_depayload(p.payload) for p in rtp)
        # Whichever runs first on a frame pays for the cold caches: the order alternates.
        incoming = [("decode", decoder), ("decode_one_thread", one_thread)]
        for name, each in incoming if i % 2 else incoming[::-1]:
            with shared.timing(name):
                decoded = each.decode(JitterFrame(data, rtp[0].timestamp))
            if each is decoder:
                frame = decoded[0]
        assert isinstance(frame, VideoFrame)
        with shared.timing("to_bgr"):
            # The server's own conversion (a kept swscale context): ``frame.to_ndarray(format=...)``
            # makes a new one for every frame, 0.22 instead of 0.06 ms at 480p.
            image = pool.to_bgr(frame)
        with shared.timing("engine"):
            result = processor.process(image, source, options, i / 30.0)
        with shared.timing("to_i420"):
            out = to_video_frame(result.frame, None)
        out.pts, out.time_base = i * CLOCK // 30, Fraction(1, CLOCK)
        labels = list(encoders)
        for label in labels[i % len(labels) :] + labels[: i % len(labels)]:
            encoder = encoders[label]
            with steps[label].timing("encode"):
                payloads, ts = encoder.encode(out)
            shown = redecoders[label].decode(JitterFrame(b"".join(depayload(p) for p in payloads), ts))
            if shown and i >= warmup:
                picture = shown[0].to_ndarray(format="bgr24")
                quality[label]["psnr"].append(cv2.PSNR(picture, result.frame))
                quality[label]["ssim"].append(ssim_luma(picture, result.frame))
            packets_out = _packets(payloads, ts, seq[label])
            seq[label] += len(packets_out)
            with steps[label].timing("rtp_out"):
                for packet in packets_out:
                    protect[label].protect(packet.serialize())
    report: dict[str, Any] = {"codec": codec, "frames": len(frames) - warmup}
    common = {k: statistics.median(v[warmup:]) for k, v in shared.ms.items()}
    report["decode_threads"] = {
        "auto_ms": round(common["decode"], 3),
        "one_ms": round(common.pop("decode_one_thread"), 3),
    }
    # Steps whose cost varies from frame to frame (the engine's keyframes, the detector, codec
    # keyframes) make medians undercount: what a session costs is the mean.
    common_mean = {k: statistics.fmean(v[warmup:]) for k, v in shared.ms.items() if k in common}
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
            "psnr_db": round(statistics.median(quality[label]["psnr"]), 2),
            "ssim": round(statistics.median(quality[label]["ssim"]), 4),
        }
    pool.shutdown()
    report["engine"] = {
        key: getattr(processor, key)
        for key in ("keyframes", "mesh_calls", "detector_calls")
        if hasattr(processor, key)
    }
    return report


def _i420_buffer(frame: VideoFrame) -> np.ndarray:
    """A decoded yuv420p frame's planes as one (h*3/2, w) I420 array (OpenCV's layout)."""
    w, h = frame.width, frame.height
    out = np.empty((h * 3 // 2, w), np.uint8)
    chroma = out[h:].reshape(2, h // 2, w // 2)
    for i, plane in enumerate(frame.planes):
        rows = np.frombuffer(cast(Any, plane), np.uint8).reshape(-1, plane.line_size)
        if i == 0:
            out[:h] = rows[:h, :w]
        else:
            chroma[i - 1] = rows[: h // 2, : w // 2]
    return out


def conversions(engine: Engine, images: list[np.ndarray], warmup: int = 5) -> dict[str, Any]:
    """The frame conversions around the engine, and the alternatives measured for them (CPU ms
    per frame, medians, interleaved frame by frame in rotating order) on decoded VP8 frames:
    decoded frame to BGR with swscale (what the server does) or with ``cv2.cvtColor`` on the
    planes; BGR to I420 of the whole frame (what the server does), or the decoded planes copied
    and only the changed regions converted (the face boxes grown by the pixelation margin and
    the label's corner: the most a region-exact output could save). ``roundtrip`` is why such an
    output cannot equal the full conversion outside the regions: decoded planes -> BGR -> I420
    moves many pixels by more than one level."""
    from av.video.reformatter import VideoReformatter

    from swaprtc.label import LabelStyle, render_label
    from swaprtc.rtc.privacy import expand_box

    encoder, decoder = vpx.Vp8Encoder(), vpx.Vp8Decoder()
    encoder.target_bitrate = BROWSER_BITRATE
    decoded: list[Any] = []
    for i, image in enumerate(images):
        payloads, ts = encoder.encode(to_video_frame(image, i * CLOCK // 30, Fraction(1, CLOCK)))
        decoded += decoder.decode(JitterFrame(b"".join(vpx.vp8_depayload(p) for p in payloads), ts))
    h, w = images[0].shape[:2]
    label = render_label(w, h, LabelStyle())
    reformatter = VideoReformatter()
    boxes = [expand_box(face.bbox, images[0].shape) for face in engine.detect(images[0])]
    if label is not None:
        boxes.append((label.x, label.y, label.x + label.alpha.shape[1], label.y + label.alpha.shape[0]))
    # Even-aligned regions: 4:2:0 chroma covers 2x2 pixels.
    boxes = [(x1 & ~1, y1 & ~1, min(w, x2 + 1) & ~1, min(h, y2 + 1) & ~1) for x1, y1, x2, y2 in boxes]

    def regions(frame: VideoFrame, bgr: np.ndarray) -> None:
        _i420_buffer(frame)
        for x1, y1, x2, y2 in boxes:
            cv2.cvtColor(np.ascontiguousarray(bgr[y1:y2, x1:x2]), cv2.COLOR_BGR2YUV_I420)

    steps: dict[str, Any] = {
        "to_bgr_swscale": lambda f, b: reformatter.reformat(f, format="bgr24").to_ndarray(),
        "to_bgr_cv2_planes": lambda f, b: cv2.cvtColor(_i420_buffer(f), cv2.COLOR_YUV2BGR_I420),
        "to_i420_whole_frame": lambda f, b: to_video_frame(b, None),
        "to_i420_changed_regions_only": regions,
    }
    ms: dict[str, list[float]] = {k: [] for k in steps}
    names = list(steps)
    for i, frame in enumerate(decoded):
        bgr = reformatter.reformat(frame, format="bgr24").to_ndarray()
        for name in names[i % len(names) :] + names[: i % len(names)]:
            t0 = time.thread_time()
            steps[name](frame, bgr)
            ms[name].append((time.thread_time() - t0) * 1000.0)
    planes = _i420_buffer(decoded[-1]).astype(np.int16)
    bgr = reformatter.reformat(decoded[-1], format="bgr24").to_ndarray()
    moved = np.abs(cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420).astype(np.int16) - planes)
    return {
        "ms_per_frame": {k: round(statistics.median(v[warmup:]), 3) for k, v in ms.items()},
        "regions": boxes,
        "roundtrip": {
            "max_levels": int(moved.max()),
            "share_over_1_level": round(float((moved > 1).mean()), 4),
        },
    }


def bench_session_cost(
    engine: Engine,
    source: SourceFace,
    photo: np.ndarray,
    frames: int,
    resolutions: list[str],
    *,
    settings: Settings | None = None,
    seconds: float = 8.0,
    rounds: int = 0,
    repo: Path | None = None,
    baseline: str | None = None,
    camera: str = "drift",
) -> dict[str, Any]:
    """The step table per resolution and codec (skipped with ``frames`` 0); with ``rounds`` > 0
    (and ``settings``, ``repo``) also the whole-process figure of each resolution, against
    ``baseline``'s server code when given, its client streaming ``camera`` (the talking face is
    placed by ``engine``'s detector)."""
    from swaprtc.embedded.bench import live_frames

    out: dict[str, Any] = {"cpus": os.cpu_count()}
    cv_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # one session's work, as a worker's executor thread does it
    try:
        for label in resolutions:
            out[label] = {}
            if frames > 0:
                stream = live_frames(photo, max(frames, 20) + 10, RESOLUTIONS[label])
                out[label] = {codec: one_session(engine, source, stream, codec) for codec in ("vp8", "h264")}
                out[label]["conversions"] = conversions(engine, stream)
    finally:
        cv2.setNumThreads(cv_threads)
    if rounds > 0 and settings is not None and repo is not None:
        with contextlib.ExitStack() as stack:
            variants = pixel_thread_variants(settings)
            if baseline is not None:
                variants = code_variants(settings, stack.enter_context(checkout(repo, baseline)))
                out["baseline"] = baseline
            for label in resolutions:
                out[label]["whole_process"] = whole_process(
                    settings, label, seconds, rounds, repo, variants, camera, engine.detect
                )
    return out


@contextlib.contextmanager
def checkout(repo: Path, ref: str) -> Iterator[Path]:
    """``ref``'s ``server/`` tree (and ``models/``, where the package finds its manifest) in a
    temporary folder (``git archive``; the repository is not touched); yields the folder to put
    on PYTHONPATH."""
    with tempfile.TemporaryDirectory(prefix="swaprtc-baseline-") as tmp:
        archive = subprocess.run(
            ["git", "-C", str(repo), "archive", ref, "server", "models"], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        yield Path(tmp) / "server"


def pixel_thread_variants(settings: Settings) -> dict[str, dict[str, str]]:
    """``before``: OpenCV's default pool (one thread per core); ``after``: today's ``--pixel-threads``."""
    return {
        "before": {"SWAPRTC_PIXEL_THREADS": str(os.cpu_count() or 1)},
        "after": {"SWAPRTC_PIXEL_THREADS": str(settings.pixel_threads)},
    }


def code_variants(settings: Settings, baseline_server: Path) -> dict[str, dict[str, str]]:
    """``before``: the baseline commit's server code; ``after``: this checkout's; same settings."""
    same = {"SWAPRTC_PIXEL_THREADS": str(settings.pixel_threads)}
    path = os.environ.get("PYTHONPATH")
    return {
        "before": {**same, "PYTHONPATH": os.pathsep.join(p for p in (str(baseline_server), path) if p)},
        "after": dict(same),
    }


def _thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of each thread of ``pid`` (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, float] = {}
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                out[int(tid)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def _thread_names(pid: int) -> dict[int, str]:
    """Python thread names by native id, from ``py-spy dump`` when py-spy is installed (dev tool);
    threads it does not list are native ones (OpenCV, ONNX Runtime, codec pools)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        return {}
    try:
        dump = subprocess.run([spy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    names: dict[int, str] = {}
    for line in dump.stdout.splitlines():
        if line.startswith("Thread ") and '"' in line:
            with contextlib.suppress(ValueError):
                tid = int(line.split()[1], 0)
                names[tid] = line.split('"')[1]
    return names


# Python thread names (prefixes) -> what the thread does in a session.
THREAD_ROLES = (
    ("MainThread", "event loop: RTP/RTCP, SRTP, ICE, DataChannel, asyncio"),
    ("swaprtc-infer", "swap job: to BGR, engine, pixelation, to I420"),
    ("video-decoder", "VP8 decode (aiortc's decoder thread)"),
    ("asyncio", "encode + payload packetiser (aiortc, default executor)"),
    ("swaprtc-guard", "face hiding while a swap is late"),
    ("swaprtc-upload", "source photo upload"),
)


def _role(name: str | None) -> str:
    if name is None:
        return "native threads (OpenCV/ONNX Runtime/codec pools)"
    return next((role for prefix, role in THREAD_ROLES if name.startswith(prefix)), name)


def client_photos(repo: Path) -> tuple[np.ndarray, np.ndarray]:
    """What a benchmark client uses: the source photo it uploads and the face photo its camera
    picture is cut from (tests/data of the source checkout ``repo``)."""
    photo = cv2.imread(str(repo / "tests" / "data" / "astronaut.png"))
    face = cv2.imread(str(repo / "tests" / "data" / "obama.jpg"))
    if photo is None or face is None:
        raise FileNotFoundError("tests/data photos missing: run from a source checkout")
    return photo, face


async def _one_server_run(
    settings: Settings,
    resolution: str,
    env: dict[str, str],
    seconds: float,
    repo: Path,
    camera: tuple[str, np.ndarray, np.ndarray | None],
) -> dict[str, Any]:
    """One server and one client streaming ``camera`` (its name, picture and the picture's face's
    five key points, capacity_client.camera_loop's arguments)."""
    import aiohttp

    from swaprtc.benchmarks.capacity import ServerUnderTest
    from swaprtc.benchmarks.capacity_client import client_main

    photo, _ = client_photos(repo)
    _, png = cv2.imencode(".png", photo)
    log_path = Path(tempfile.gettempdir()) / f"session-cost-server-{resolution}.log"
    server = ServerUnderTest(settings, "1", log_path, env)
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    name, picture, kps = camera
    client = context.Process(
        target=client_main,
        args=(server.base, png.tobytes(), picture, child, str(repo), name, kps),
        daemon=True,
    )
    try:
        async with aiohttp.ClientSession() as http:
            await server.wait_ready(http)
            client.start()
            loop = asyncio.get_running_loop()
            if not await loop.run_in_executor(None, parent.poll, 90):
                raise RuntimeError("the client did not connect")
            kind, value = parent.recv()
            if kind != "ready":
                raise RuntimeError(f"the client failed: {value}")
            await asyncio.sleep(3.0)  # past the first frames and the encoder's ramp-up
            pid = server.process.pid
            names = await loop.run_in_executor(None, _thread_names, pid)
            threads0, t0 = _thread_cpu(pid), time.monotonic()
            await asyncio.sleep(seconds)
            threads1, t1 = _thread_cpu(pid), time.monotonic()
            parent.send(("window", t0, t1))
            received = await loop.run_in_executor(None, parent.poll, 30)
            latencies = parent.recv()[1] if received else []
    finally:
        with contextlib.suppress(OSError):
            parent.send(("stop",))
        if client.pid is not None:
            client.join(10)
            if client.is_alive():
                client.kill()
                client.join()
        server.stop()
    frames = max(1, len(latencies))
    roles: dict[str, float] = {}
    for tid, cpu in threads1.items():
        role = _role(names.get(tid)) if names else "all threads"
        roles[role] = roles.get(role, 0.0) + (cpu - threads0.get(tid, 0.0)) * 1000.0 / frames
    total_s = sum(threads1.values()) - sum(threads0.get(t, 0.0) for t in threads1)
    return {
        "fps": round(len(latencies) / (t1 - t0), 1),
        "latency_p50_ms": round(statistics.median(latencies) * 1000.0, 1) if latencies else None,
        "server_ms_per_frame": round(total_s * 1000.0 / frames, 2),
        "server_cores": round(total_s / (t1 - t0), 3),
        "threads_ms_per_frame": {k: round(v, 2) for k, v in sorted(roles.items(), key=lambda kv: -kv[1])},
    }


def whole_process(
    settings: Settings,
    resolution: str,
    seconds: float,
    rounds: int,
    repo: Path,
    variants: dict[str, dict[str, str]] | None = None,
    camera: str = "drift",
    detect: Detect | None = None,
) -> dict[str, Any]:
    """Server CPU of one real session, ``before``/``after`` server runs alternating ``rounds`` times
    (``variants``: each one's extra environment; default: the OpenCV pool comparison), the client
    streaming ``camera`` (``detect`` places the talking face)."""
    from swaprtc.benchmarks.capacity import camera_picture, camera_points

    variants = variants if variants is not None else pixel_thread_variants(settings)
    picture = camera_picture(client_photos(repo)[1], RESOLUTIONS[resolution])
    feed = (camera, picture, camera_points(camera, picture, detect))
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in variants}
    for _ in range(rounds):
        for label, env in variants.items():
            runs[label].append(asyncio.run(_one_server_run(settings, resolution, env, seconds, repo, feed)))
    out: dict[str, Any] = {"seconds": seconds, "rounds": rounds, "camera": camera, "env": variants}
    for label, measured in runs.items():
        cores = statistics.median(r["server_cores"] for r in measured)
        out[label] = {
            "server_ms_per_frame": round(statistics.median(r["server_ms_per_frame"] for r in measured), 2),
            "server_cores": round(cores, 3),
            "min_fps": min(r["fps"] for r in measured),
            "runs": measured,
        }
    return out
