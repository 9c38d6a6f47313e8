"""Engine selection (``--engine auto|neural|embedded``) and the default engine end to end."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

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
from swaprtc.types import Face, SourceFace

if TYPE_CHECKING:
    import onnxruntime as ort


NEURAL = ("w600k_r50", "inswapper_128")


def store_with(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch, neural_present: tuple[str, ...]
) -> ModelStore:
    """A store asked for CUDA first, where the listed neural models count as present (no real
    weights exist here); everything else (loading the probe model, reading back its providers) is real."""
    store = ModelStore(models_dir, ("CUDAExecutionProvider", "CPUExecutionProvider"), allow_download=False)
    real_available = store.available
    monkeypatch.setattr(store, "available", lambda name: name in neural_present or real_available(name))
    return store


class ReportsProviders:
    """A loaded session that reports the given providers (stands in for a session on a real GPU)."""

    def __init__(self, session: ort.InferenceSession, providers: list[str]) -> None:
        self._session, self._providers = session, providers

    def get_providers(self) -> list[str]:
        return list(self._providers)

    def __getattr__(self, name: str) -> object:
        return getattr(self._session, name)


def test_auto_picks_embedded_where_onnxruntime_lists_cuda_but_runs_on_cpu(
    model_store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # onnxruntime-gpu lists CUDA without a GPU; the session then really runs on CPU. Trusting the
    # list would give a CPU box the 0.3 fps neural engine.
    import onnxruntime as ort

    listed = ["CUDAExecutionProvider", *ort.get_available_providers()]
    monkeypatch.setattr(ort, "get_available_providers", lambda: listed)
    store = store_with(model_store.models_dir, monkeypatch, NEURAL)
    assert "CUDAExecutionProvider" in store.planned_providers()
    assert choose_engine(Settings(engine="auto"), store) == "embedded"
    assert store.providers_in_use("retinaface_mnet025") == ["CPUExecutionProvider"]


@pytest.mark.parametrize(
    ("present", "gpu", "expected"),
    [
        (NEURAL, True, "neural"),
        (NEURAL, False, "embedded"),
        (NEURAL[:1], True, "embedded"),  # one neural model missing
        ((), True, "embedded"),
    ],
)
def test_auto_needs_every_neural_model_and_a_gpu_that_really_runs(
    model_store: ModelStore,
    monkeypatch: pytest.MonkeyPatch,
    present: tuple[str, ...],
    gpu: bool,
    expected: str,
) -> None:
    store = store_with(model_store.models_dir, monkeypatch, present)
    real = store.session("retinaface_mnet025")  # the probe model, really loaded
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if gpu else ["CPUExecutionProvider"]
    store._sessions["retinaface_mnet025"] = ReportsProviders(real, providers)
    assert choose_engine(Settings(engine="auto"), store) == expected
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
            "--label",
            "off",  # the AI-generated label is tested on its own; here only the face may change
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


def test_an_engine_refuses_a_source_another_engine_prepared() -> None:
    face = Face(np.zeros(4, np.float32), 1.0, np.zeros((5, 2), np.float32))
    source = SourceFace(engine="neural", face=face, faces_found=1, thumbnail_jpeg=b"", payload="latent")
    assert source.payload_for("neural", str) == "latent"
    with pytest.raises(ValueError, match="prepared by the 'neural' engine, not 'embedded'"):
        source.payload_for("embedded", str)
    with pytest.raises(ValueError):  # the right engine, but not the payload it makes
        source.payload_for("neural", bytes)
