"""``swaprtc bench`` runs its suites end to end and reports JSON (speed itself is not asserted:
timings belong in benchmarks, not tests)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from swaprtc.cli import main

if TYPE_CHECKING:
    from swaprtc.models.store import ModelStore


def test_bench_reports_json_for_each_suite(
    model_store: ModelStore, face_landmark_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    code = main(
        [
            "bench",
            "--suite",
            "frame_io,paste,embedded",
            "--frames",
            "3",
            "--models-dir",
            str(model_store.models_dir),
            "--output",
            str(out),
        ]
    )
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    results = printed["results"]
    assert set(results) == {"frame_io", "paste", "embedded"}
    for label in ("720p", "1080p"):
        assert results["frame_io"][label]["i420_from_numpy_buffer"]["n"] == 3
        paste = results["paste"][label]
        assert paste["crop_region"]["median_ms"] > 0 and paste["insightface_reference"]["median_ms"] > 0
        assert paste["speedup"] > 0
    embedded = results["embedded"]
    assert embedded["swapped_frames"] == embedded["frames"] > 0
    assert set(embedded["median_ms"]) >= {"landmarks", "warp", "color", "blend", "total"}
    side = embedded["side_by_side"]
    assert side["frames"] > 0 and side["ratio"] > 0
    assert side["cpu_ms_median"]["today"] > 0 and side["cpu_ms_median"]["before_issue_10"] > 0


def test_bench_rejects_unknown_suite(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--suite", "nope"]) == 2
    assert "unknown suite" in capsys.readouterr().err
