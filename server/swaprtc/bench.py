"""``swaprtc bench``: speed measurements as JSON.

Every comparison is measured side by side in one run (interleaved rounds), and medians are
reported, because machines here are noisy. Suites: frame_io, paste, embedded, neural, and quality
(swap quality judged by a face recognizer; needs the optional ``quality`` extra).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from swaprtc.settings import Settings

if TYPE_CHECKING:  # imported where used: each suite pays only for its own imports
    from swaprtc.embedded.engine import EmbeddedEngine
    from swaprtc.types import SourceFace

SUITES = (
    "frame_io",
    "paste",
    "controls",
    "embedded",
    "neural",
    "session_cost",
    "capacity",
    "gpu",
    "quality",
    "triton",
)


def time_ms(fn: Callable[[], object], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000.0)
    return out


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered), 3),
        "p90_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))], 3),
        "min_ms": round(ordered[0], 3),
        "n": len(ordered),
    }


def side_by_side(
    cases: dict[str, Callable[[], object]], repeat: int, warmup: int = 2
) -> dict[str, list[float]]:
    """Interleave the cases round by round so drift in machine load hits all of them alike."""
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(repeat):
        for name, fn in cases.items():
            samples[name].extend(time_ms(fn, 1))
    return samples


def bench_frame_io(frames: int) -> dict[str, Any]:
    """Output frame construction: bgr24 VideoFrame vs I420 conversion + from_numpy_buffer."""
    from av import VideoFrame

    result: dict[str, Any] = {}
    rng = np.random.default_rng(0)
    for label, (w, h) in {"720p": (1280, 720), "1080p": (1920, 1080)}.items():
        img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)

        def via_bgr24(img: np.ndarray = img) -> object:
            return VideoFrame.from_ndarray(img, format="bgr24").reformat(format="yuv420p")

        def via_i420(img: np.ndarray = img) -> object:
            yuv = np.asarray(cv2.cvtColor(img, cv2.COLOR_BGR2YUV_I420), dtype=np.uint8)
            return VideoFrame.from_numpy_buffer(yuv, format="yuv420p")

        s = side_by_side({"bgr24_then_reformat": via_bgr24, "i420_from_numpy_buffer": via_i420}, frames)
        a, b = summary(s["bgr24_then_reformat"]), summary(s["i420_from_numpy_buffer"])
        result[label] = {
            "bgr24_then_reformat": a,
            "i420_from_numpy_buffer": b,
            "speedup": round(a["median_ms"] / max(b["median_ms"], 1e-6), 2),
        }
    return result


def machine_info() -> dict[str, Any]:
    import onnxruntime as ort

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "onnxruntime": ort.__version__,
        "available_providers": ort.get_available_providers(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def run_bench(args: argparse.Namespace, settings: Settings) -> int:
    # "all" means the quick speed suites: capacity takes minutes of real sessions, gpu minutes of
    # neural models (seconds per call on a CPU), quality needs an optional extra and minutes of CPU.
    slow = ("capacity", "gpu", "quality", "triton")  # triton: needs --inference-url
    quick = tuple(s for s in SUITES if s not in slow)
    wanted = quick if args.suite == "all" else tuple(s.strip() for s in args.suite.split(","))
    unknown = [s for s in wanted if s not in SUITES]
    if unknown:
        print(f"swaprtc bench: unknown suite(s) {unknown}; choose from {list(SUITES)}", file=sys.stderr)
        return 2
    report: dict[str, Any] = {"machine": machine_info(), "frames": args.frames, "results": {}}
    runners: dict[str, Callable[[], dict[str, Any]]] = {
        "frame_io": lambda: bench_frame_io(args.frames),
        "paste": lambda: _bench_paste(args.frames, settings),
        "controls": lambda: _bench_controls(args.frames, settings),
        "embedded": lambda: _bench_embedded(args, settings),
        "neural": lambda: _bench_neural(args.frames, settings),
        "session_cost": lambda: _bench_session_cost(args, settings),
        "capacity": lambda: _bench_capacity(args, settings),
        "gpu": lambda: _bench_gpu(args, settings),
        "quality": lambda: _bench_quality(args, settings),
        "triton": lambda: _bench_triton(args, settings),
    }
    for name in wanted:
        try:
            report["results"][name] = runners[name]()
        except Exception as exc:  # a missing optional model must not hide the other suites
            report["results"][name] = {"skipped": f"{type(exc).__name__}: {exc}"}
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")
    return 0


REPO_DATA = Path(__file__).resolve().parents[2] / "tests" / "data"


def _photo(name: str) -> np.ndarray:
    image = cv2.imread(str(REPO_DATA / name))
    if image is None:
        raise FileNotFoundError(f"bench photo {REPO_DATA / name} missing (run from a source checkout)")
    return image


def _store(settings: Settings, threads: int | None = None) -> Any:
    from swaprtc.models.store import ModelStore

    return ModelStore(
        settings.models_dir,
        settings.providers,
        allow_download=settings.auto_download,
        intra_op_threads=threads,
    )


def _bench_controls(frames: int, settings: Settings) -> dict[str, Any]:
    """The label, colour correction and mouth mask per frame, side by side with the paste-back."""
    from swaprtc.benchmarks.controls import run_controls_suite
    from swaprtc.pipeline.detector import RetinaFaceDetector

    detector = RetinaFaceDetector(_store(settings).session("retinaface_mnet025"))
    return run_controls_suite(detector, _photo("obama.jpg"), frames, side_by_side, summary)


def close_up_frame(photo: np.ndarray, photo_face_h: float, w: int, h: int) -> np.ndarray:
    """A w×h frame where the photo's face fills ~40% of the height, as in a webcam close-up."""
    scale = 0.4 * h / photo_face_h
    face_img = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    frame = np.full((h, w, 3), 90, np.uint8)
    fh, fw = min(face_img.shape[0], h), min(face_img.shape[1], w)
    frame[:fh, (w - fw) // 2 : (w - fw) // 2 + fw] = face_img[:fh, :fw]
    return frame


def _bench_paste(frames: int, settings: Settings) -> dict[str, Any]:
    """Crop-region paste-back vs insightface's full-frame reference, one 128 crop, 720p and 1080p."""
    from swaprtc.pipeline.aligner import estimate_arcface, warp_crop
    from swaprtc.pipeline.detector import RetinaFaceDetector
    from swaprtc.pipeline.paste import paste_back, paste_back_reference

    detector = RetinaFaceDetector(_store(settings).session("retinaface_mnet025"))
    photo = _photo("obama.jpg")
    photo_face_h = detector.detect(photo)[0].height
    result: dict[str, Any] = {}
    for label, (w, h) in {"720p": (1280, 720), "1080p": (1920, 1080)}.items():
        frame = close_up_frame(photo, photo_face_h, w, h)
        face = detector.detect(frame)[0]
        m = estimate_arcface(face.kps, 128)
        aligned = warp_crop(frame, m, 128)
        swapped = 255 - aligned

        def crop_region(
            frame: np.ndarray = frame, swapped: np.ndarray = swapped, m: np.ndarray = m
        ) -> np.ndarray:
            return paste_back(frame, swapped, m)

        def insightface_reference(
            frame: np.ndarray = frame,
            swapped: np.ndarray = swapped,
            aligned: np.ndarray = aligned,
            m: np.ndarray = m,
        ) -> np.ndarray:
            return paste_back_reference(frame, swapped, aligned, m)

        s = side_by_side({"crop_region": crop_region, "insightface_reference": insightface_reference}, frames)
        ours, ref = summary(s["crop_region"]), summary(s["insightface_reference"])
        result[label] = {
            "face_height_px": round(face.height),
            "crop_region": ours,
            "insightface_reference": ref,
            "speedup": round(ref["median_ms"] / max(ours["median_ms"], 1e-6), 1),
        }
    return result


def _embedded_engine(settings: Settings) -> Any:
    """The embedded engine as one session's stream runs it: one intra-op thread."""
    from swaprtc.embedded.engine import EmbeddedEngine

    return EmbeddedEngine.from_store(_store(settings), settings)


def _cadence_streams(
    every_frame: EmbeddedEngine, engine: EmbeddedEngine, source: SourceFace, drift: list[np.ndarray]
) -> dict[str, dict[str, object]]:
    """``bench_cadence`` on one face streamed three ways: ``drift`` (a rigid sideways drift), its
    first frame ``still`` and that frame ``talking`` (benchmarks/talking.py, its 60-frame loop
    repeated), as many frames each. A still or rigidly moving face lets the engine reuse its
    renderings most; a talking one is what a call shows."""
    from swaprtc.benchmarks.capacity import camera_points
    from swaprtc.benchmarks.capacity_client import camera_loop
    from swaprtc.embedded.bench import bench_cadence

    picture = drift[0]
    kps = camera_points("talking", picture, engine.detect)
    streams = {"drift": drift}
    for camera in ("still", "talking"):
        loop = camera_loop(camera, picture, kps)
        streams[camera] = [loop[i % len(loop)] for i in range(len(drift))]
    return {name: bench_cadence(every_frame, engine, frames, source) for name, frames in streams.items()}


def _bench_embedded(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """The embedded engine on a live-like stream (640×480 unless ``--resolution`` says otherwise),
    one face, single-threaded: with the settings' cadence, and side by side with a full swap of
    every frame (and the engine before issue 10). The cadence comparison runs on a drifting
    (``cadence``), a still and a talking face (``streams``), at every resolution."""
    from swaprtc.embedded.bench import SIZES, bench_before_after, bench_embedded, live_frames

    labels = [r.strip() for r in (getattr(args, "resolution", None) or "480p").split(",") if r.strip()]
    unknown = [r for r in labels if r not in SIZES]
    if unknown:
        raise ValueError(f"unknown resolution(s) {unknown}; choose from {list(SIZES)}")
    engine = _embedded_engine(settings)
    every_frame = _embedded_engine(
        replace(settings, swap_every=1, detect_every_tracked=settings.detect_every)
    )
    source = engine.prepare_source(_photo("astronaut.png"))
    count = max(args.frames, 10) + 5
    stream = live_frames(_photo("obama.jpg"), count, SIZES[labels[0]])
    result: dict[str, Any] = dict(bench_embedded(engine, stream, source))
    result["resolution"] = labels[0]
    streams = _cadence_streams(every_frame, engine, source, stream)
    # "cadence" stays the drifting stream's: the key other tools and earlier reports read.
    result["cadence"], result["streams"] = streams["drift"], streams
    result["side_by_side"] = bench_before_after(every_frame, stream, _photo("astronaut.png"))
    others: dict[str, Any] = {}
    for label in labels[1:]:
        drift = live_frames(_photo("obama.jpg"), count, SIZES[label])
        streams = _cadence_streams(every_frame, engine, source, drift)
        others[label] = {"cadence": streams["drift"], "streams": streams}
    result["other_resolutions"] = others
    return result


def _resolutions(args: argparse.Namespace) -> list[str]:
    return [r.strip() for r in (getattr(args, "resolution", None) or "480p,720p").split(",") if r.strip()]


def _cameras(args: argparse.Namespace, default: str) -> list[str]:
    """``--camera``: what the benchmark clients stream, a comma list of capacity_client.CAMERAS."""
    from swaprtc.benchmarks.capacity_client import check_cameras

    text = getattr(args, "camera", None) or default
    return check_cameras([c.strip() for c in text.split(",") if c.strip()])


def _bench_session_cost(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Server CPU per frame and step of one embedded-engine session (swaprtc.benchmarks.session_cost)."""
    from swaprtc.benchmarks.session_cost import bench_session_cost

    # Drift by default: what its whole-process client streamed before --camera.
    cameras = _cameras(args, "drift")
    if len(cameras) != 1:
        raise ValueError(f"session_cost streams one camera, not {cameras}")
    engine = _embedded_engine(settings)
    source = engine.prepare_source(_photo("astronaut.png"))
    return bench_session_cost(
        engine,
        source,
        _photo("obama.jpg"),
        args.frames,
        _resolutions(args),
        settings=settings,
        seconds=args.step_s,
        rounds=args.rounds,
        repo=REPO_DATA.parent.parent,
        baseline=getattr(args, "baseline", None),
        camera=cameras[0],
    )


def _bench_capacity(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Sessions a real server holds (swaprtc.benchmarks.capacity)."""
    from swaprtc.benchmarks.capacity import CapacityPlan, run_capacity

    workers = [w.strip() for w in (getattr(args, "bench_workers", None) or "1,2").split(",") if w.strip()]
    plan = CapacityPlan(
        workers=workers,
        resolutions=_resolutions(args),
        max_sessions=args.max_sessions,
        step_s=args.step_s,
        ramp_all=args.ramp_all,
        cameras=tuple(_cameras(args, "still")),
    )
    # The talking face is placed by the embedded engine's own detector, as the server finds it.
    detect = _embedded_engine(settings).detect if "talking" in plan.cameras else None
    return run_capacity(plan, settings, REPO_DATA, detect)


def _bench_neural(frames: int, settings: Settings) -> dict[str, Any]:
    """The neural engine per stage on a 640×480 frame with one face.

    No real InSwapper/ArcFace/GFPGAN weights can be had offline, so unless the models dir holds
    them this runs random-weight stand-ins with the real architectures (tools/build_standins.py):
    realistic compute, meaningless pixels.
    """
    from swaprtc.inference.bench import load_models
    from swaprtc.types import SwapOptions

    # Detector on every frame, no batching (so no batch-axis check at load): one call per stage.
    models = load_models(replace(settings, detect_every=1, batch_window_ms=0, max_batch=1))
    engine = models.engine(batching=False)
    weights = models.label
    source = engine.prepare_source(_photo("astronaut.png"))
    target = cv2.resize(_photo("grace_hopper.jpg"), (640, 480))
    n = max(2, min(frames, 5))  # each CPU call takes seconds
    out: dict[str, Any] = {"weights": weights, "engine": engine.describe(), "frame_size": [640, 480]}
    for label, options in {"swap": SwapOptions(), "swap+enhance": SwapOptions(enhance=True)}.items():
        if options.enhance and engine.enhancer is None:
            continue
        stream = engine.open_stream()
        stream.process(target, source, options)  # warm-up
        per_stage: dict[str, list[float]] = {}
        for _ in range(n):
            for stage, ms in stream.process(target, source, options).timings_ms.items():
                per_stage.setdefault(stage, []).append(ms)
        out[label] = {k: round(statistics.median(v), 2) for k, v in per_stage.items()}
        out[label]["n"] = n
    return out


def _bench_gpu(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """The neural engine as a GPU engine: stages, one 720p session, 1-64 streams with and without
    batching (swaprtc.inference.bench, which needs no aiortc/PyAV)."""
    from swaprtc.inference.bench import STREAM_LEVELS, load_models, run_gpu_suite

    levels = tuple(int(x) for x in args.streams.split(",")) if args.streams else STREAM_LEVELS
    if settings.inference_url:  # the whole engine on the shared inference tier
        from swaprtc.inference.triton_bench import triton_models

        models = triton_models(settings)
    else:
        models = load_models(settings, args.weights)
    return run_gpu_suite(
        models,
        frames=args.frames,
        levels=levels,
        seconds=args.seconds,
        enhance=args.enhance,
        progress=lambda msg: print(f"swaprtc bench gpu: {msg}", file=sys.stderr),
    )


def _bench_triton(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """One call per model on the inference server, shared memory vs plain gRPC, interleaved."""
    from swaprtc.inference.triton_bench import run_triton_suite

    return run_triton_suite(settings, calls=args.frames)


QUALITY_CACHE = Path(os.environ.get("SWAPRTC_QUALITY_CACHE", Path.home() / ".cache/swaprtc/quality"))


def _bench_quality(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Swap quality on the quality set (swaprtc.quality): the engine before issue 10 and today's,
    side by side, judged by dlib's face recognizer."""
    from swaprtc.embedded.engine import EmbeddedEngine
    from swaprtc.quality.bench import Methods, run_quality
    from swaprtc.quality.photos import quality_set
    from swaprtc.quality.recognizer import DlibRecognizer
    from swaprtc.types import SwapOptions

    recognizer = DlibRecognizer()  # fails early, with the install hint, without the extra
    store = _store(settings)
    engine = EmbeddedEngine.from_paths(store.ensure("retinaface_mnet025"), store.ensure("face_landmark"))
    names = [n.strip() for n in args.photos.split(",") if n.strip()] if args.photos else None
    photos = quality_set(engine.detect, None if args.repo_photos_only else QUALITY_CACHE, names)
    methods = Methods(engine, SwapOptions()).table()
    return run_quality(
        photos,
        methods,
        recognizer,
        max_pairs=args.pairs,
        sheet_path=Path(args.sheet) if args.sheet else None,
    )
