"""Engine selection (``--engine auto|neural|embedded``) and the default engine end to end."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from swaprtc.cli import main
from swaprtc.embedded.engine import EmbeddedEngine
from swaprtc.errors import ModelError
from swaprtc.factory import build_engine, choose_engine
from swaprtc.models.store import ModelStore
from swaprtc.pipeline.detector import RetinaFaceDetector
from swaprtc.settings import Settings


def cpu_store(models_dir: Path, monkeypatch: pytest.MonkeyPatch, neural_present: bool) -> ModelStore:
    store = ModelStore(models_dir, ("CUDAExecutionProvider", "CPUExecutionProvider"), allow_download=False)
    real_available = store.available
    monkeypatch.setattr(
        store,
        "available",
        lambda name: (name in ("w600k_r50", "inswapper_128") and neural_present) or real_available(name),
    )
    return store


@pytest.mark.parametrize("neural_present", [False, True])
def test_auto_picks_embedded_without_a_gpu(
    model_store: ModelStore, monkeypatch: pytest.MonkeyPatch, neural_present: bool
) -> None:
    # Even with the neural models present, a CPU-only onnxruntime must not get the 0.3 fps engine.
    store = cpu_store(model_store.models_dir, monkeypatch, neural_present)
    assert choose_engine(Settings(engine="auto"), store) == "embedded"


def test_auto_picks_neural_where_a_gpu_provider_really_runs(
    model_store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = cpu_store(model_store.models_dir, monkeypatch, neural_present=True)
    gpu = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(store, "providers_in_use", lambda name: gpu)
    assert choose_engine(Settings(engine="auto"), store) == "neural"
    assert choose_engine(Settings(engine="embedded"), store) == "embedded"


def test_build_engine_default_is_the_embedded_engine(
    model_store: ModelStore, face_landmark_path: Path
) -> None:
    engine = build_engine(Settings(models_dir=model_store.models_dir, auto_download=False))
    assert isinstance(engine, EmbeddedEngine)
    assert engine.describe()["engine"] == "embedded"


def test_neural_without_models_is_a_clear_error(model_store: ModelStore, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "retinaface_mnet025.onnx").write_bytes(model_store.path("retinaface_mnet025").read_bytes())
    with pytest.raises(ModelError) as info:
        build_engine(Settings(models_dir=models, engine="neural", auto_download=False))
    assert "inswapper_128" in info.value.message or "w600k_r50" in info.value.message


def test_swap_command_with_the_default_engine(
    model_store: ModelStore, face_landmark_path: Path, tmp_path: Path, grace_bgr: np.ndarray
) -> None:
    """`swaprtc swap` with no engine flag: auto -> embedded on this CPU machine, real models."""
    target = tmp_path / "target.png"
    cv2.imwrite(str(target), grace_bgr)
    output = tmp_path / "out.png"
    code = main(
        [
            "swap",
            "--source",
            "tests/data/obama.jpg",
            "--target",
            str(target),
            "--output",
            str(output),
            "--models-dir",
            str(model_store.models_dir),
            "--no-auto-download",
            "--no-progress",
        ]
    )
    assert code == 0
    result = cv2.imread(str(output))
    assert result.shape == grace_bgr.shape
    face = RetinaFaceDetector(model_store.session("retinaface_mnet025")).detect(grace_bgr)[0]
    x1, y1, x2, y2 = face.bbox.astype(int)
    diff = np.abs(result.astype(int) - grace_bgr.astype(int)).sum(axis=2)
    assert diff[y1:y2, x1:x2].mean() > 10  # the face changed
    outside = np.ones(diff.shape, bool)
    outside[max(0, y1 - 40) : y2 + 40, max(0, x1 - 40) : x2 + 40] = False
    assert diff[outside].max() == 0  # nothing else did
