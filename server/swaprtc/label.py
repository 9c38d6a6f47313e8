"""The visible "AI-generated" label burned into every swapped frame (operator settings only).

The label (white text on a dark box, anti-aliased) is rendered once per frame size into a small
BGR patch and a float alpha mask; drawing it is then one ``cv2.blendLinear`` over a corner of the
frame, ~0.1 ms at 720p. Sized to the frame's height so it stays legible at 480p and small at 1080p.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

import cv2
import numpy as np

from swaprtc.engine import Casting, FrameProcessor
from swaprtc.types import SourceFace, SwapOptions, SwapResult

TEXT = "AI-generated"
HEIGHT_FRACTION = 0.045  # label box height as a fraction of the frame height
MIN_HEIGHT = 16  # px: below this the text stops being legible
MARGIN_FRACTION = 0.4  # distance from the frame edges, in label heights
BOX_ALPHA = 0.6  # the dark box behind the text, before the operator's opacity
FONT = cv2.FONT_HERSHEY_SIMPLEX
MAX_SIZES = 8  # rendered sizes kept (streams change resolution rarely)


@dataclass(frozen=True)
class LabelStyle:
    position: str = "top-right"
    opacity: float = 0.85

    def to_json(self, enabled: bool) -> dict[str, object]:
        return {"enabled": enabled, "position": self.position, "opacity": self.opacity, "text": TEXT}


@dataclass(frozen=True)
class RenderedLabel:
    x: int
    y: int
    patch: np.ndarray  # (h, w, 3) uint8
    alpha: np.ndarray  # (h, w) float32, already scaled by the opacity
    inverse: np.ndarray  # 1 - alpha


def render_label(frame_w: int, frame_h: int, style: LabelStyle) -> RenderedLabel | None:
    """The label for a frame of this size, or None when the frame is too small to hold it."""
    height = max(MIN_HEIGHT, round(frame_h * HEIGHT_FRACTION))
    thickness = 1 if height < 28 else 2
    # Fit the text to ~60% of the box height.
    (tw, th), _ = cv2.getTextSize(TEXT, FONT, 1.0, thickness)
    scale = 0.6 * height / th
    (tw, th), _ = cv2.getTextSize(TEXT, FONT, scale, thickness)
    pad = max(3, height // 4)
    width = tw + 2 * pad
    margin = round(MARGIN_FRACTION * height)
    if width + 2 * margin > frame_w or height + 2 * margin > frame_h:
        return None
    text = np.zeros((height, width), np.uint8)
    cv2.putText(text, TEXT, (pad, (height + th) // 2), FONT, scale, 255, thickness, cv2.LINE_AA)
    coverage = text.astype(np.float32) / 255.0
    patch = np.zeros((height, width, 3), np.uint8)
    patch[...] = 255  # white text; the box colour comes from the alpha mix with black below
    patch = (patch.astype(np.float32) * coverage[..., None]).astype(np.uint8)
    alpha = (BOX_ALPHA + (1.0 - BOX_ALPHA) * coverage) * float(np.clip(style.opacity, 0.0, 1.0))
    right = style.position.endswith("right")
    bottom = style.position.startswith("bottom")
    x = frame_w - width - margin if right else margin
    y = frame_h - height - margin if bottom else margin
    alpha = np.ascontiguousarray(alpha, np.float32)
    return RenderedLabel(x, y, patch, alpha, np.ascontiguousarray(1.0 - alpha, np.float32))


def labeler_for(enabled: bool, position: str, opacity: float) -> Labeler | None:
    """The operator's label settings resolved: None when the label is off."""
    return Labeler(LabelStyle(position, opacity)) if enabled else None


class Labeler:
    """Draws the label; caches one rendering per frame size. Safe to share between threads."""

    def __init__(self, style: LabelStyle) -> None:
        self.style = style
        self._cache: dict[tuple[int, int], RenderedLabel | None] = {}
        self._lock = threading.Lock()

    def rendered(self, frame_w: int, frame_h: int) -> RenderedLabel | None:
        key = (frame_w, frame_h)
        with self._lock:
            if key not in self._cache:
                if len(self._cache) >= MAX_SIZES:
                    self._cache.clear()
                self._cache[key] = render_label(frame_w, frame_h, self.style)
            return self._cache[key]

    def draw(self, frame: np.ndarray) -> np.ndarray:
        """Burn the label into ``frame`` in place (the caller owns it) and return it."""
        label = self.rendered(frame.shape[1], frame.shape[0])
        if label is not None:
            h, w = label.alpha.shape
            roi = frame[label.y : label.y + h, label.x : label.x + w]
            roi[...] = cv2.blendLinear(label.patch, roi, label.alpha, label.inverse)
        return frame


class LabellingProcessor:
    """A FrameProcessor that burns the label into every frame in which a face was swapped, on
    the same worker thread as the swap (live streams and ``swaprtc swap`` alike)."""

    def __init__(self, inner: FrameProcessor, labeler: Labeler) -> None:
        self.inner = inner
        self.labeler = labeler

    def process(
        self,
        frame: np.ndarray,
        source: SourceFace | None,
        options: SwapOptions,
        timestamp_s: float | None = None,
        casting: Casting | None = None,
    ) -> SwapResult:
        result = self.inner.process(frame, source, options, timestamp_s, casting)
        if result.swapped <= 0:
            return result
        # An engine may return the input itself (strength 0): never draw into the caller's frame.
        out = result.frame.copy() if result.frame is frame else result.frame
        return replace(result, frame=self.labeler.draw(out))

    def reset(self) -> None:
        self.inner.reset()


def labelled(processor: FrameProcessor, labeler: Labeler | None) -> FrameProcessor:
    return processor if labeler is None else LabellingProcessor(processor, labeler)
