"""The face mesh model converted from TFLite to ONNX behaves like the original on real faces."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from ai_edge_litert.interpreter import Interpreter
from swaprtc.embedded.convert import _same_pads, convert_face_landmark
from swaprtc.embedded.engine import CONVERTED_LANDMARK_SHA256
from swaprtc.embedded.landmarks import FaceMeshModel, roi_from_detection
from swaprtc.pipeline.detector import RetinaFaceDetector


@pytest.fixture(scope="module")
def converted(face_landmark_path: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("conv") / "face_landmark.onnx"
    return out, convert_face_landmark(face_landmark_path, out)


def test_conversion_is_deterministic_and_pinned(
    face_landmark_path: Path, converted: tuple[Path, str], tmp_path: Path
) -> None:
    path, digest = converted
    again = convert_face_landmark(face_landmark_path, tmp_path / "again.onnx")
    assert digest == again == hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest == CONVERTED_LANDMARK_SHA256


def test_same_padding_matches_tensorflow() -> None:
    # TF SAME: output = ceil(in / stride), the odd padding pixel goes after.
    assert _same_pads(192, 3, 2) == (0, 1)
    assert _same_pads(96, 3, 1) == (1, 1)
    assert _same_pads(6, 3, 2) == (0, 1)


@pytest.mark.parametrize("photo", ["astronaut_bgr", "grace_bgr", "obama_bgr"])
def test_converted_landmarks_match_tflite(
    photo: str,
    request: pytest.FixtureRequest,
    converted: tuple[Path, str],
    face_landmark_path: Path,
    retinaface_session: ort.InferenceSession,
) -> None:
    image = request.getfixturevalue(photo)
    face = RetinaFaceDetector(retinaface_session).detect(image)[0]
    onnx_model = FaceMeshModel(ort.InferenceSession(str(converted[0]), providers=["CPUExecutionProvider"]))
    tensor = onnx_model.crop(image, roi_from_detection(face.bbox, face.kps))
    onnx_pts, onnx_score = onnx_model.run_tensor(tensor)

    lite = Interpreter(model_path=str(face_landmark_path), num_threads=1)
    lite.allocate_tensors()
    lite.set_tensor(lite.get_input_details()[0]["index"], tensor)
    lite.invoke()
    outs = {int(np.prod(d["shape"])): lite.get_tensor(d["index"]) for d in lite.get_output_details()}
    lite_pts = outs[1404].reshape(468, 3)
    lite_score = 1 / (1 + np.exp(-float(outs[1].reshape(-1)[0])))

    assert lite_score > 0.9  # a real face, so the comparison means something
    # Crop pixels (192 across the ROI): agreement to a thousandth of a pixel in x, y and depth.
    assert np.abs(onnx_pts - lite_pts).max() < 1e-2
    assert abs(onnx_score - lite_score) < 1e-4
    # And the points are spread over the face, not a degenerate output that trivially matches.
    assert np.ptp(lite_pts[:, 0]) > 60 and np.ptp(lite_pts[:, 1]) > 60


def test_engine_converts_in_memory_when_the_models_folder_is_read_only(
    face_landmark_path: Path, tmp_path: Path, astronaut_bgr: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    import swaprtc.embedded.convert as convert
    from swaprtc.embedded.engine import EmbeddedEngine, converted_landmark_model

    tflite = tmp_path / "face_landmark.tflite"
    tflite.write_bytes(face_landmark_path.read_bytes())

    def read_only(*_: object) -> None:
        raise PermissionError("read-only file system")

    # Tests run as root here, where chmod does not bind: the real conversion runs and writes its
    # temporary file, then moving it into place fails as on a read-only folder.
    monkeypatch.setattr(convert.os, "replace", read_only)
    model = converted_landmark_model(tflite)
    assert isinstance(model, bytes) and hashlib.sha256(model).hexdigest() == CONVERTED_LANDMARK_SHA256
    # Neither the model nor the half-written temporary file is left in the folder.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["face_landmark.tflite"]
    engine = EmbeddedEngine.from_paths(face_landmark_path.parent / "retinaface_mnet025.onnx", tflite)
    assert engine.prepare_source(astronaut_bgr).faces_found == 1
