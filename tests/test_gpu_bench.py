"""``swaprtc bench --suite gpu`` in CI size: the tiny contract models, two stream counts, a second
per count, in a subprocess where aiortc, aiohttp and PyAV cannot be imported (the device image
has only numpy, opencv, onnx and onnxruntime)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from swaprtc.models.store import ModelStore

ROOT = Path(__file__).resolve().parents[1]

BLOCK = """
import importlib.abc, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("av", "aiortc", "aiohttp", "aioice", "tqdm", "prometheus_client"):
            raise ImportError("not on the device image: " + name)

sys.meta_path.insert(0, Block())
"""

SCRIPT = (
    BLOCK
    + """
import json
from pathlib import Path
from swaprtc.inference.bench import BenchModels, run_gpu_suite
from swaprtc.inference.loader import local_neural_runners, neural_tracking
from swaprtc.settings import Settings
from tests.tiny_models import TinyStore, arcface_model, inswapper_model, make_emap

folder, retina, mesh = (Path(a) for a in sys.argv[1:4])
emap = make_emap()
models = {"w600k_r50": arcface_model(), "inswapper_128": inswapper_model("invert", emap=emap)}
store = TinyStore(folder, models, {"retinaface_mnet025": retina, "face_landmark": mesh})
# A long window: on a busy 2-core machine the streams' frames still meet in one batch.
settings = Settings(batch_window_ms=100, max_batch=8, models_dir=folder)
bench = BenchModels(local_neural_runners(store, settings), neural_tracking(store, settings), settings, "tiny")
report = run_gpu_suite(bench, frames=4, levels=(1, 4), seconds=1.0)
assert not [m for m in sys.modules if m.split(".")[0] in ("av", "aiortc", "aiohttp")]
print(json.dumps(report))
"""
)


def test_gpu_suite_runs_on_tiny_models_without_aiortc(tmp_path: Path, model_store: ModelStore) -> None:
    retina, mesh = model_store.ensure("retinaface_mnet025"), model_store.ensure("face_landmark")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path), str(retina), str(mesh)],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    single = report["single_session"]
    assert single["fps"] > 0 and single["faces_swapped"] == 4
    for stage in ("detect", "align", "swap", "paste", "total"):
        assert single["stages"][stage]["p95_ms"] >= single["stages"][stage]["p50_ms"] >= 0
    assert single["added_latency"]["n"] == 4
    for level in ("1", "4"):
        row = report["streams"][level]
        assert row["unbatched"]["faces_per_s"] > 0 and row["batched"]["faces_per_s"] > 0
    # Four concurrent streams really shared batched calls.
    assert report["streams"]["4"]["batched"]["swapper_batching"]["largest_batch"] > 1
    assert report["gpu"]["settings"]["batch_window_ms"] == 100
    assert report["memory"]["max_rss_mib"] > 0
    assert report["swapper"]["providers"] == ["CPUExecutionProvider"]


def test_the_bench_command_needs_only_the_device_packages(tmp_path: Path) -> None:
    """``swaprtc bench --suite gpu`` itself imports nothing the device image lacks: without real
    weights it reports that, not an ImportError."""
    script = BLOCK + "import runpy; runpy.run_module('swaprtc', run_name='__main__')"
    argv = [
        "bench",
        "--suite",
        "gpu",
        "--weights",
        "real",
        "--models-dir",
        str(tmp_path),
        "--no-auto-download",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "server")}
    done = subprocess.run(
        [sys.executable, "-c", script, *argv], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-2000:]
    skipped = json.loads(done.stdout)["results"]["gpu"]["skipped"]
    assert skipped.startswith("FileNotFoundError: real neural weights not in"), skipped
