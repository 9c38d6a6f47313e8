"""``swaprtc models list|verify`` through the real command-line entry point, on a temp folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from swaprtc.cli import main
from swaprtc.models.manifest import Manifest

if TYPE_CHECKING:
    from swaprtc.models.store import ModelStore


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, dict]]:
    code = main(["models", *argv, "--json"])
    out = json.loads(capsys.readouterr().out)
    return code, {m["name"]: m for m in out["models"]}


@pytest.fixture()
def models_dir(tmp_path: Path, model_store: ModelStore) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(model_store.path("retinaface_mnet025"), folder / "retinaface_mnet025.onnx")
    return folder


def test_list_json_shows_every_model_and_its_state(
    capsys: pytest.CaptureFixture[str], models_dir: Path
) -> None:
    code, models = run_json(capsys, "list", "--models-dir", str(models_dir))
    assert code == 0
    assert list(models) == Manifest.load().names
    retina = models["retinaface_mnet025"]
    assert retina["present"] and retina["role"] == "detector" and retina["licence"].startswith("MIT")
    # Where each pinned digest comes from is listed, so an operator can check it independently.
    assert retina["digest_source"].startswith("computed here from the bytes literal WEIGHTS")
    # Read back from a real session (list loads the small detector as a probe), not just planned.
    assert retina["providers"] == ["CPUExecutionProvider"] and retina["providers_source"] == "loaded"
    assert retina["verified"] and retina["state"] == "verified"  # hashed once, then cached
    assert (models_dir / "retinaface_mnet025.onnx.verified").is_file()
    swapper = models["inswapper_128"]
    assert not swapper["present"] and swapper["size"] == 554_253_681 and swapper["providers"] == []


def test_verify_then_list_reports_verified(capsys: pytest.CaptureFixture[str], models_dir: Path) -> None:
    code, models = run_json(capsys, "verify", "retinaface_mnet025", "--models-dir", str(models_dir))
    assert code == 0 and models["retinaface_mnet025"]["status"] == "verified"
    _, models = run_json(capsys, "list", "--models-dir", str(models_dir))
    assert models["retinaface_mnet025"]["verified"]
    # Without names, verify checks what is present; absent optional models are not failures.
    code, models = run_json(capsys, "verify", "--models-dir", str(models_dir))
    assert code == 0 and models["det_10g"]["status"] == "missing"


def test_verify_fails_on_corrupt_or_missing_files(
    capsys: pytest.CaptureFixture[str], models_dir: Path
) -> None:
    target = models_dir / "retinaface_mnet025.onnx"
    target.write_bytes(target.read_bytes()[:-10])
    _, models = run_json(capsys, "list", "--models-dir", str(models_dir))
    assert models["retinaface_mnet025"]["state"] == "corrupt" and not models["retinaface_mnet025"]["verified"]
    code, models = run_json(capsys, "verify", "retinaface_mnet025", "--models-dir", str(models_dir))
    assert code == 1
    assert models["retinaface_mnet025"]["status"] == "corrupt"
    assert "failed verification" in models["retinaface_mnet025"]["error"]
    code, models = run_json(capsys, "verify", "det_10g", "--models-dir", str(models_dir))
    assert code == 1 and models["det_10g"]["status"] == "missing"


def test_unknown_model_name_is_an_error(capsys: pytest.CaptureFixture[str], models_dir: Path) -> None:
    assert main(["models", "verify", "nope", "--models-dir", str(models_dir)]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err


def test_human_readable_list(capsys: pytest.CaptureFixture[str], models_dir: Path) -> None:
    assert main(["models", "list", "--models-dir", str(models_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(Manifest.load().names)
    assert lines[0].split()[:2] == ["retinaface_mnet025", "detector"] and "CPU" in lines[0]
