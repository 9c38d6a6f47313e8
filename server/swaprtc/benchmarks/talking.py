"""A talking face made from one still picture, for benchmarks that must not flatter a still camera.

A still or rigidly drifting picture lets an engine that reuses renderings (the embedded engine's
keyframes) reuse them almost always; a person on a call talks. This opens and closes the mouth
(the jaw and lower lip pulled down, about three syllables a second with a varying loudness) and
lifts the brows once per loop, by smooth warps placed from the detector's five key points. The
loop's last frame leads back into its first, so it can be replayed without a jump.
"""

from __future__ import annotations

import cv2
import numpy as np

LOOP_FRAMES = 60  # 2 s at 30 fps
JAW_OPEN = 0.15  # widest mouth opening, in mouth widths (~13 px at 480p: ~8 % of the face)
BROW_LIFT = 0.12  # brow raise, in eye distances
SYLLABLES_PER_S = 3.0


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def openings(count: int = LOOP_FRAMES, fps: float = 30.0) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: the mouth opening and the brow lift, each 0..1, periodic over ``count`` frames."""
    t = np.arange(count) / fps
    period_s = count / fps
    syllables = max(1, round(SYLLABLES_PER_S * period_s))
    loudness = 0.55 + 0.45 * np.sin(np.pi * t / period_s) ** 2
    mouth = np.sin(np.pi * syllables * t / period_s) ** 2 * loudness
    brows = np.sin(np.pi * t / period_s) ** 6
    return mouth, brows


def talking_frames(image: np.ndarray, kps: np.ndarray, count: int = LOOP_FRAMES) -> list[np.ndarray]:
    """``count`` frames of ``image`` whose face (five key points ``kps``: eyes, nose, mouth
    corners, as RetinaFace gives them) talks."""
    kps = np.asarray(kps, np.float32).reshape(5, 2)
    h, w = image.shape[:2]
    eyes, mouth_l, mouth_r = kps[:2], kps[3], kps[4]
    mouth_c = (mouth_l + mouth_r) / 2
    mouth_w = float(np.linalg.norm(mouth_r - mouth_l))
    eye_d = float(np.linalg.norm(eyes[1] - eyes[0]))
    xs = np.arange(w, dtype=np.float32)[None, :]
    ys = np.arange(h, dtype=np.float32)[:, None]
    # Jaw: everything below the mouth line moves down, most at the lip, fading out over the chin
    # and to the sides (a fixed field, scaled per frame).
    across = np.exp(-(((xs - mouth_c[0]) / (0.75 * mouth_w)) ** 2))
    below = (ys - mouth_c[1]) / mouth_w
    jaw = across * _smoothstep((below - 0.02) / 0.12) * np.exp(-np.maximum(below - 0.15, 0.0) / 1.1)
    # Brows: a band above the eyes moves up.
    brow_y = float(eyes[:, 1].mean()) - 0.35 * eye_d
    brow_x = float(eyes[:, 0].mean())
    brow = np.exp(-(((xs - brow_x) / (1.1 * eye_d)) ** 2) - ((ys - brow_y) / (0.3 * eye_d)) ** 2)
    mouth, brows = openings(count)
    map_x = np.broadcast_to(xs, (h, w)).astype(np.float32)
    frames = []
    for open_, lift in zip(mouth, brows, strict=True):
        # Backward map: a pixel shows what was above it (jaw down) or below it (brows up).
        dy = jaw * np.float32(open_ * JAW_OPEN * mouth_w) - brow * np.float32(lift * BROW_LIFT * eye_d)
        map_y = (ys - dy).astype(np.float32)
        frames.append(cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))
    return frames
