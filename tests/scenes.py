"""Test scenes built from the real photos in tests/data: two people in one 640×480 frame, where
each can move or leave."""

from __future__ import annotations

import cv2
import numpy as np

from tests.conftest import load_bgr

WIDTH, HEIGHT = 640, 480
BACKGROUND = 96


def _astronaut() -> np.ndarray:
    return cv2.resize(load_bgr("astronaut.png"), (330, 330), interpolation=cv2.INTER_AREA)


def _grace() -> np.ndarray:
    grace = load_bgr("grace_hopper.jpg")
    return cv2.resize(grace, (154, 180), interpolation=cv2.INTER_AREA)


def _place(canvas: np.ndarray, image: np.ndarray, x: int, y: int) -> None:
    h, w = image.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, canvas.shape[1]), min(y + h, canvas.shape[0])
    if x1 > x0 and y1 > y0:
        canvas[y0:y1, x0:x1] = image[y0 - y : y1 - y, x0 - x : x1 - x]


def two_people(
    astronaut_at: tuple[int, int] | None = (10, 40), grace_at: tuple[int, int] | None = (420, 130)
) -> np.ndarray:
    """The astronaut (the larger face) and Grace Hopper (smaller), each placed at its top-left
    corner, or absent when None."""
    canvas = np.full((HEIGHT, WIDTH, 3), BACKGROUND, np.uint8)
    if astronaut_at is not None:
        _place(canvas, _astronaut(), *astronaut_at)
    if grace_at is not None:
        _place(canvas, _grace(), *grace_at)
    return canvas
