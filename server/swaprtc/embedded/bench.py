"""Speed of the embedded engine on a live-like stream: one FrameProcessor, frame after frame.

``bench_embedded`` is what ``swaprtc bench`` calls; run this module directly for a quick number:
``python -m swaprtc.embedded.bench --models-dir models``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from swaprtc.embedded.engine import EmbeddedEngine
from swaprtc.embedded.mesh import inner_face
from swaprtc.types import SourceFace, SwapOptions

STAGES = ("detect", "landmarks", "motion", "warp", "color", "blend", "total")
SIZES = {"480p": (640, 480), "720p": (1280, 720)}  # --resolution labels of the live-like stream


def frame_kind(timings: dict[str, float]) -> str:
    """What a cadenced frame was: ``reused`` (moved from the keyframe), ``detector`` (a keyframe
    on which the detector ran too) or ``keyframe``."""
    if "motion" in timings:
        return "reused"
    return "detector" if timings.get("detect", 0.0) > 0 else "keyframe"


def live_frames(
    image: np.ndarray, count: int, size: tuple[int, int] = (640, 480), drift_px: float = 6.0
) -> list[np.ndarray]:
    """``count`` frames of ``size`` cut from ``image`` with a slow sideways drift, like a webcam
    with a person moving a little (so tracking and smoothing do real work)."""
    w, h = size
    scale = max(w / image.shape[1], h / image.shape[0])
    big = cv2.resize(
        image,
        (round(image.shape[1] * scale) + 2 * int(drift_px) + 2, round(image.shape[0] * scale) + 2),
        interpolation=cv2.INTER_AREA,
    )
    frames = []
    for i in range(count):
        dx = drift_px * (1 + np.sin(2 * np.pi * i / 60))
        m = np.array([[1.0, 0.0, dx], [0.0, 1.0, 1.0]])
        frames.append(cv2.warpAffine(big, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP))
    return frames


def bench_embedded(
    engine: EmbeddedEngine,
    frames: Sequence[np.ndarray],
    source: SourceFace,
    options: SwapOptions | None = None,
    warmup: int = 5,
) -> dict[str, object]:
    """Median and p90 per stage (ms) over ``frames`` processed in order by one stream."""
    options = options or SwapOptions()
    processor = engine.open_stream()
    # Single-threaded means OpenCV too (its calls would otherwise fan out over every core).
    cv_threads = cv2.getNumThreads()
    cv2.setNumThreads(engine.threads)
    try:
        for frame in frames[:warmup]:
            processor.process(frame, source, options)
        per_stage: dict[str, list[float]] = {s: [] for s in STAGES}
        cpu_ms: list[float] = []
        swapped = 0
        wall = time.perf_counter()
        for frame in frames[warmup:]:
            cpu = time.process_time()
            result = processor.process(frame, source, options)
            cpu_ms.append((time.process_time() - cpu) * 1000)
            swapped += result.swapped
            for stage in STAGES:
                per_stage[stage].append(result.timings_ms.get(stage, 0.0))
        wall = time.perf_counter() - wall
    finally:
        cv2.setNumThreads(cv_threads)
    n = max(len(frames) - warmup, 1)
    return {
        "engine": "embedded",
        "frames": n,
        "frame_size": list(frames[0].shape[1::-1]),
        "threads": engine.threads,
        "swapped_frames": swapped,
        "fps": n / wall if wall > 0 else 0.0,
        "median_ms": {s: round(statistics.median(v), 2) for s, v in per_stage.items()},
        "mean_ms": {s: round(statistics.fmean(v), 2) for s, v in per_stage.items()},
        "p90_ms": {s: round(float(np.percentile(v, 90)), 2) for s, v in per_stage.items()},
        # CPU time of this process per frame: equals wall time when the machine is otherwise idle,
        # and stays meaningful when other work competes for the cores (wall times then inflate).
        "cpu_ms": _stats(cpu_ms),
        "detector_calls": processor.detector_calls,
        "mesh_calls": processor.mesh_calls,
        "keyframes": processor.keyframes,
        "swap_every": engine.swap_every,
        "detect_every_tracked": engine.detect_every_tracked,
    }


def bench_before_after(
    engine: EmbeddedEngine, frames: Sequence[np.ndarray], source_image: np.ndarray, warmup: int = 5
) -> dict[str, object]:
    """CPU time per frame of today's engine and of the engine before issue 10 (frozen in
    swaprtc.quality.reference), interleaved frame by frame on the same stream, one thread each.
    Both track the face the same way; only the swap differs."""
    from swaprtc.embedded import mesh as m
    from swaprtc.quality.reference import legacy_swap, legacy_texture

    source = engine.prepare_source(source_image)
    assert source.face.mesh is not None
    texture, tex_mesh = legacy_texture(source_image, source.face.mesh)
    triangles = m.triangulate(tex_mesh)
    now, before = engine.open_stream(), engine.open_stream()
    options = SwapOptions()

    def legacy(frame: np.ndarray) -> None:
        faces = before.tracker.update(frame, False).faces
        if faces:
            legacy_swap(frame, faces[0].mesh, texture, tex_mesh, triangles)

    cases = {"today": lambda f: now.process(f, source, options), "before_issue_10": legacy}
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    cv_threads = cv2.getNumThreads()
    cv2.setNumThreads(engine.threads)
    try:
        for i, frame in enumerate(frames):
            for name, run in cases.items():
                start = time.process_time()
                run(frame)
                if i >= warmup:
                    cpu[name].append((time.process_time() - start) * 1000)
    finally:
        cv2.setNumThreads(cv_threads)
    medians = {name: round(statistics.median(v), 2) for name, v in cpu.items()}
    return {
        "frames": len(frames) - warmup,
        "cpu_ms_median": medians,
        "cpu_ms_p90": {name: round(float(np.percentile(v, 90)), 2) for name, v in cpu.items()},
        "ratio": round(medians["today"] / max(medians["before_issue_10"], 1e-6), 2),
    }


def _stats(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "median": round(statistics.median(values), 2),
        "mean": round(statistics.fmean(values), 2),
        "p90": round(float(np.percentile(values, 90)), 2),
    }


def bench_cadence(
    every_frame: EmbeddedEngine,
    cadenced: EmbeddedEngine,
    frames: Sequence[np.ndarray],
    source: SourceFace,
    warmup: int = 5,
) -> dict[str, object]:
    """A full swap of every frame (``every_frame``: swap_every 1, today's detector cadence) against
    ``cadenced`` (the settings' keyframe and detector cadence), interleaved frame by frame on the
    same stream, one thread. CPU per frame (median, mean, p90: with a cadence the mean is what a
    session costs), model calls, and how far the reused frames are from a full swap.

    Reuse error: mean absolute difference (grey levels) on the inner face of a reused frame
    against (a) the every-frame stream's output of the same frame (its smoothed mesh differs by
    sub-pixel amounts, so keyframes differ from it too: ``keyframe_vs_every_frame`` is that floor)
    and (b) a full swap of the same frame at the mesh the cadenced stream tracked there (the
    approximation of moving a rendering instead of rendering again)."""
    from swaprtc.embedded.engine import SourceTexture
    from swaprtc.embedded.swap import swap_face

    options = SwapOptions()
    payload = source.payload_for("embedded", SourceTexture)
    streams = {"every_frame": every_frame.open_stream(), "cadenced": cadenced.open_stream()}
    cpu: dict[str, list[float]] = {name: [] for name in streams}
    # The cadenced stream's CPU and stage times by frame_kind().
    kind_cpu: dict[str, list[float]] = {}
    kind_stages: dict[str, dict[str, list[float]]] = {}
    reuse_vs_stream: list[float] = []
    reuse_vs_same_mesh: list[float] = []
    keyframe_vs_stream: list[float] = []
    cv_threads = cv2.getNumThreads()
    cv2.setNumThreads(cadenced.threads)
    try:
        for i, frame in enumerate(frames):
            results = {}
            for name, stream in streams.items():
                start = time.process_time()
                results[name] = stream.process(frame, source, options, i / 30.0)
                if i >= warmup:
                    cpu[name].append((time.process_time() - start) * 1000)
            if i >= warmup:
                timings = results["cadenced"].timings_ms
                kind = frame_kind(timings)
                kind_cpu.setdefault(kind, []).append(cpu["cadenced"][-1])
                for stage in STAGES:
                    kind_stages.setdefault(kind, {}).setdefault(stage, []).append(timings.get(stage, 0.0))
            full, cheap = results["every_frame"], results["cadenced"]
            if i < warmup or not full.faces or not cheap.faces or full.faces[0].mesh is None:
                continue
            mask = inner_face(frame.shape, full.faces[0].mesh)
            diff = float(np.abs(cheap.frame.astype(np.int16) - full.frame)[mask].mean())
            if "motion" in cheap.timings_ms:  # a reused frame
                reuse_vs_stream.append(diff)
                track = streams["cadenced"].tracker.tracks[0]
                same = frame.copy()
                timings = {"warp": 0.0, "color": 0.0, "blend": 0.0}
                if track.mesh is not None and swap_face(
                    frame, same, track.mesh, track.depth, payload, options, cadenced.max_cells, timings
                ):
                    reuse_vs_same_mesh.append(float(np.abs(cheap.frame.astype(np.int16) - same)[mask].mean()))
            else:
                keyframe_vs_stream.append(diff)
    finally:
        cv2.setNumThreads(cv_threads)
    report: dict[str, object] = {"frames": len(frames) - warmup}
    for name, stream in streams.items():
        engine = every_frame if name == "every_frame" else cadenced
        report[name] = {
            "swap_every": engine.swap_every,
            "detect_every": engine.detect_every,
            "detect_every_tracked": engine.detect_every_tracked,
            "cpu_ms": _stats(cpu[name]),
            "cores_at_30fps": round(statistics.fmean(cpu[name]) * 30 / 1000, 3),
            "mesh_calls": stream.mesh_calls,
            "detector_calls": stream.detector_calls,
            "keyframes": stream.keyframes,
        }
    report["cadenced"]["face_render_px"] = cadenced.face_render_px  # type: ignore[index]
    report["cadenced"]["by_kind"] = {  # type: ignore[index]
        kind: {
            "frames": len(values),
            "cpu_ms": _stats(values),
            "stage_median_ms": {s: round(statistics.median(v), 2) for s, v in kind_stages[kind].items()},
        }
        for kind, values in sorted(kind_cpu.items())
    }
    report["mean_cpu_ratio"] = round(
        statistics.fmean(cpu["cadenced"]) / max(statistics.fmean(cpu["every_frame"]), 1e-6), 3
    )
    report["reuse_error"] = {
        "reused_frames": len(reuse_vs_stream),
        "vs_every_frame": _stats(reuse_vs_stream),
        "keyframe_vs_every_frame": _stats(keyframe_vs_stream),
        "vs_full_swap_at_same_mesh": _stats(reuse_vs_same_mesh),
    }
    return report


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--source", type=Path, default=Path("tests/data/astronaut.png"))
    parser.add_argument("--target", type=Path, default=Path("tests/data/obama.jpg"))
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    engine = EmbeddedEngine.from_paths(
        args.models_dir / "retinaface_mnet025.onnx",
        args.models_dir / "face_landmark.tflite",
        threads=args.threads,
    )
    source_image, target = cv2.imread(str(args.source)), cv2.imread(str(args.target))
    if source_image is None or target is None:
        parser.error("--source and --target must be readable images")
    source = engine.prepare_source(source_image)
    print(json.dumps(bench_embedded(engine, live_frames(target, args.frames), source), indent=2))


if __name__ == "__main__":
    main()
