"""Shared fixtures: real public-domain face photos (see tests/data/README.md)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

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
