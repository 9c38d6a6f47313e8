"""The neural engine's one assembly (local runners from a model store): ``--detector scrfd`` loads
det_10g and decodes it as SCRFD; the default loads RetinaFace."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from swaprtc.inference import loader
from swaprtc.models.store import ModelStore
from swaprtc.pipeline.neural import NeuralEngine
from swaprtc.settings import Settings

from tests.tiny_models import (
    TinyStore,
    arcface_model,
    inswapper_model,
    make_emap,
    scrfd_model,
    scrfd_with_face,
)


@pytest.mark.parametrize(
    ("detector", "model", "faces"), [("scrfd", "det_10g", 1), ("retinaface", "retinaface_mnet025", 0)]
)
def test_the_detector_setting_picks_the_model_and_its_decoder(
    tmp_path: Path, model_store: ModelStore, detector: str, model: str, faces: int
) -> None:
    outputs, _ = scrfd_with_face((10, 12), anchor=1, score=0.9)  # a tiny det_10g that "sees" one face
    store = TinyStore(
        tmp_path,
        {
            "w600k_r50": arcface_model(),
            "inswapper_128": inswapper_model("invert", emap=make_emap()),
            "det_10g": scrfd_model(outputs),
        },
        {"retinaface_mnet025": model_store.ensure("retinaface_mnet025")},
    )
    engine = NeuralEngine.from_runners(loader.local_neural_runners(store, Settings(detector=detector)))  # type: ignore[arg-type]
    assert engine.describe()["models"]["detector"] == model  # type: ignore[index]
    # A blank frame: only the tiny SCRFD stand-in reports a face there, at the anchor it encodes.
    found = engine.detect(np.zeros((640, 640, 3), np.uint8))
    assert len(found) == faces
    if faces:
        np.testing.assert_allclose(found[0].bbox, [80 - 16, 96 - 24, 80 + 32, 96 + 40], atol=1e-3)


def test_onnx_sessions_are_created_in_one_place() -> None:
    """Every ONNX Runtime session of the service (embedded engine, model store, neural engine,
    bench) comes from swaprtc.inference.sessions.create_session, so provider and GPU options
    apply alike everywhere."""
    package = Path(__file__).resolve().parent.parent / "server" / "swaprtc"
    makers = sorted(
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if "InferenceSession(" in path.read_text()
    )
    assert makers == ["inference/sessions.py"], makers
