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
            "frame_io,paste,controls,embedded",
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
    assert set(results) == {"frame_io", "paste", "controls", "embedded"}
    for label in ("480p", "720p", "1080p"):
        controls = results["controls"][label]
        assert {
            k: controls[k]["n"] for k in ("paste_128", "label", "color_correction", "mouth_mask")
        } == dict.fromkeys(("paste_128", "label", "color_correction", "mouth_mask"), 3)
        assert set(controls["per_paste"]) == {"label", "color_correction", "mouth_mask"}
    for label in ("720p", "1080p"):
        assert results["frame_io"][label]["i420_from_numpy_buffer"]["n"] == 3
        paste = results["paste"][label]
        ours, reference = paste["crop_region"]["median_ms"], paste["insightface_reference"]["median_ms"]
        assert ours > 0 and reference > 0
        # The ratio is the reference's median over ours (rounded to 0.1), not the other way round.
        assert paste["speedup"] == pytest.approx(reference / ours, abs=0.051)
    embedded = results["embedded"]
    assert embedded["swapped_frames"] == embedded["frames"] > 0
    assert set(embedded["median_ms"]) >= {"landmarks", "warp", "color", "blend", "total"}


def test_bench_rejects_unknown_suite(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--suite", "nope"]) == 2
    assert "unknown suite" in capsys.readouterr().err
