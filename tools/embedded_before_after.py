"""CPU per frame of the embedded engine at two commits, interleaved frame by frame on one stream.

    python tools/embedded_before_after.py --before d19b168 --resolution 480p,720p --frames 200 \\
        --rounds 3 --out docs/bench-2026-12-01-engine-round3.json

The ``--before`` commit's ``server/`` is exported with ``git archive`` into a temporary folder and
run in one worker process, this checkout's in another; each runs the live server's defaults
(``Settings()``: keyframe and detector cadence, working resolution where the commit has one), one
thread, CPU time of the worker's thread per frame. The parent hands out frame after frame,
alternating which worker goes first, so both see the same load; ``--rounds N`` repeats the run
and keeps the median round, every round's ratio beside it. Per frame kind (keyframe,
detector, reused: as the after side reports it) and overall: median, mean, p90; and how many
output frames are byte-identical between the two.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"480p": (640, 480), "720p": (1280, 720)}
CADENCE = ("detect_every", "detect_every_tracked", "swap_every", "swap_every_still", "face_render_px")


def worker(server_dir: Path, models_dir: Path, size: tuple[int, int], frames: int) -> None:
    """Answer frame indices on stdin with one JSON line each: CPU ms, frame kind, output hash."""
    sys.path.insert(0, str(server_dir))
    import cv2
    from swaprtc.embedded.bench import live_frames
    from swaprtc.embedded.engine import EmbeddedEngine
    from swaprtc.settings import Settings
    from swaprtc.types import SwapOptions

    cv2.setNumThreads(1)
    defaults = Settings()
    kwargs = {name: getattr(defaults, name) for name in CADENCE if hasattr(defaults, name)}
    engine = EmbeddedEngine.from_paths(
        models_dir / "retinaface_mnet025.onnx", models_dir / "face_landmark.tflite", threads=1, **kwargs
    )
    source = engine.prepare_source(cv2.imread(str(ROOT / "tests/data/astronaut.png")))
    stream = live_frames(cv2.imread(str(ROOT / "tests/data/obama.jpg")), frames, size)
    processor, options = engine.open_stream(), SwapOptions()
    print(json.dumps({"ready": True, "settings": kwargs}), flush=True)
    for line in sys.stdin:
        i = int(line)
        start = time.thread_time()
        result = processor.process(stream[i], source, options, i / 30.0)
        cpu_ms = (time.thread_time() - start) * 1000
        timings = result.timings_ms
        kind = (
            "reused"
            if "motion" in timings
            else ("detector" if timings.get("detect", 0.0) > 0 else "keyframe")
        )
        digest = hashlib.sha256(result.frame.tobytes()).hexdigest()[:16]
        print(json.dumps({"cpu_ms": cpu_ms, "kind": kind, "hash": digest}), flush=True)


def _stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "frames": len(values),
        "median": round(statistics.median(values), 3),
        "mean": round(statistics.fmean(values), 3),
        "p90": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 3),
    }


def _export(ref: str, into: Path) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", ref, "server"], check=True, capture_output=True
    ).stdout
    tar_path = into / "server.tar"
    tar_path.write_bytes(archive)
    with tarfile.open(tar_path) as tar:
        tar.extractall(into, filter="data")
    return into / "server"


def compare(before_ref: str, label: str, frames: int, warmup: int, models_dir: Path) -> dict[str, Any]:
    size = SIZES[label]
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {"before": _export(before_ref, Path(tmp)), "after": ROOT / "server"}
        procs = {
            name: subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    *("--worker", str(d), "--models-dir", str(models_dir)),
                    *("--size", f"{size[0]}x{size[1]}", "--frames", str(frames)),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for name, d in dirs.items()
        }
        settings = {}
        for name, proc in procs.items():
            assert proc.stdout is not None
            settings[name] = json.loads(proc.stdout.readline())["settings"]
        cpu: dict[str, dict[str, list[float]]] = {name: {} for name in procs}
        identical = {"keyframe": 0, "detector": 0, "reused": 0}
        for i in range(frames):
            order = list(procs) if i % 2 == 0 else list(reversed(procs))
            answers = {}
            for name in order:
                proc = procs[name]
                assert proc.stdin is not None and proc.stdout is not None
                proc.stdin.write(f"{i}\n")
                proc.stdin.flush()
                answers[name] = json.loads(proc.stdout.readline())
            if i < warmup:
                continue
            kind = answers["after"]["kind"]
            for name, answer in answers.items():
                cpu[name].setdefault(kind, []).append(answer["cpu_ms"])
                cpu[name].setdefault("all", []).append(answer["cpu_ms"])
            identical[kind] += answers["before"]["hash"] == answers["after"]["hash"]
        for proc in procs.values():
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(timeout=30)
    report: dict[str, Any] = {
        "frame_size": list(size),
        "frames": frames - warmup,
        "settings": settings,
        "cpu_ms": {name: {kind: _stats(v) for kind, v in kinds.items()} for name, kinds in cpu.items()},
        "byte_identical_frames": identical,
    }
    report["mean_ratio"] = round(
        statistics.fmean(cpu["after"]["all"]) / max(statistics.fmean(cpu["before"]["all"]), 1e-9), 3
    )
    return report


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", default="main", help="git commit to compare this checkout with")
    parser.add_argument("--resolution", default="480p,720p")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=1, help="repeat the whole run; ratios per round")
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        w, h = (int(v) for v in args.size.split("x"))
        worker(args.worker, args.models_dir, (w, h), args.frames)
        return 0
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", args.before],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    report: dict[str, Any] = {
        "before": commit,
        "after": f"{head} (working tree)",
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "results": {},
    }
    labels = [label.strip() for label in args.resolution.split(",")]
    rounds: dict[str, list[dict[str, Any]]] = {label: [] for label in labels}
    for _ in range(max(1, args.rounds)):
        for label in labels:
            run = compare(args.before, label, args.frames + args.warmup, args.warmup, args.models_dir)
            rounds[label].append(run)
    for label, runs in rounds.items():
        # The median round by its mean ratio, with every round's ratio beside it.
        ranked = sorted(runs, key=lambda run: float(run["mean_ratio"]))
        report["results"][label] = {
            **ranked[len(ranked) // 2],
            "mean_ratio_per_round": [run["mean_ratio"] for run in runs],
        }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
