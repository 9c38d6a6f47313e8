"""``swaprtc bench --suite controls``: what the disclosure label and the neural swap controls cost
per frame, each measured side by side with the crop paste-back it rides on (same face, same
frame, interleaved rounds), so the ratios hold whatever the machine's load."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from swaprtc.bench import close_up_frame
from swaprtc.label import Labeler, LabelStyle
from swaprtc.pipeline.aligner import estimate_arcface, warp_crop
from swaprtc.pipeline.color import match_color
from swaprtc.pipeline.detector import Detector
from swaprtc.pipeline.neural import keep_target_mouth
from swaprtc.pipeline.paste import paste_into
from swaprtc.types import SwapOptions

SIZES = {"480p": (640, 480), "720p": (1280, 720), "1080p": (1920, 1080)}


def run_controls_suite(
    detector: Detector,
    photo: np.ndarray,
    frames: int,
    side_by_side: Callable[[dict[str, Callable[[], object]], int], dict[str, list[float]]],
    summary: Callable[[list[float]], dict[str, float]],
) -> dict[str, Any]:
    photo_face_h = detector.detect(photo)[0].height
    labeler = Labeler(LabelStyle())
    options = SwapOptions(mouth_mask=True)
    result: dict[str, Any] = {}
    for name, (w, h) in SIZES.items():
        frame = close_up_frame(photo, photo_face_h, w, h)
        face = detector.detect(frame)[0]
        m = estimate_arcface(face.kps, 128)
        crop = warp_crop(frame, m, 128)
        swapped = 255 - crop
        out = frame.copy()
        labeler.draw(out.copy())  # the label is rendered once per size, not per frame

        cases: dict[str, Callable[[], object]] = {
            "paste_128": partial(paste_into, out, swapped, m),
            "label": partial(labeler.draw, out),
            "color_correction": partial(match_color, swapped, crop),
            "mouth_mask": partial(keep_target_mouth, out, frame, m, face.kps, 128, options),
        }
        samples = side_by_side(cases, frames)
        stats = {k: summary(v) for k, v in samples.items()}
        paste_ms = max(stats["paste_128"]["median_ms"], 1e-6)
        result[name] = {
            **stats,
            "per_paste": {k: round(stats[k]["median_ms"] / paste_ms, 2) for k in cases if k != "paste_128"},
        }
    return result
