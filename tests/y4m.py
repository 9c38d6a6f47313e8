"""Write .y4m files that Chromium plays as a fake camera (``--use-file-for-fake-video-capture``).

The format is a text header, then per frame ``FRAME\\n`` and the raw I420 planes. Chromium loops the
file, so a few frames are enough for a test.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np


def fit_frame(image: np.ndarray, width: int = 640, height: int = 480) -> np.ndarray:
    """Scale a BGR photo to fit inside width×height and centre it on a mid-grey canvas.

    Letterboxing (rather than cropping) keeps the whole face in view whatever the photo's aspect.
    """
    h, w = image.shape[:2]
    scale = min(width / w, height / h)
    nw, nh = round(w * scale), round(h * scale)
    resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    canvas = np.full((height, width, 3), 128, dtype=np.uint8)
    x0, y0 = (width - nw) // 2, (height - nh) // 2
    canvas[y0 : y0 + nh, x0 : x0 + nw] = resized
    return canvas


def y4m_bytes(frames: Iterable[np.ndarray], fps: int = 30) -> bytes:
    """Encode BGR uint8 frames (all the same even width and height) as a YUV4MPEG2 stream."""
    chunks: list[bytes] = []
    size: tuple[int, int] | None = None
    for frame in frames:
        h, w = frame.shape[:2]
        if size is None:
            if w % 2 or h % 2:
                raise ValueError(f"I420 needs even dimensions, got {w}x{h}")
            size = (w, h)
            chunks.append(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode("ascii"))
        elif (w, h) != size:
            raise ValueError(f"frame size {w}x{h} differs from the first frame's {size[0]}x{size[1]}")
        chunks.append(b"FRAME\n")
        chunks.append(cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
    if size is None:
        raise ValueError("no frames")
    return b"".join(chunks)


def write_y4m(path: Path, frames: Iterable[np.ndarray], fps: int = 30) -> Path:
    path.write_bytes(y4m_bytes(frames, fps))
    return path
