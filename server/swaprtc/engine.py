"""The engine interface shared by the neural and the embedded engines.

An engine holds loaded models (created once per process, shared by all sessions). Per-stream state
such as landmark tracking lives in a ``FrameProcessor`` that each session opens for itself, so two
sessions never share mutable state.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from swaprtc.types import Face, SourceFace, SwapOptions, SwapResult


class FrameProcessor(Protocol):
    """Per-stream processing state (tracking, smoothing). Not thread-safe: one stream, one user."""

    def process(
        self,
        frame: np.ndarray,
        source: SourceFace | None,
        options: SwapOptions,
        timestamp_s: float | None = None,
    ) -> SwapResult:
        """Swap faces in one BGR frame. With ``source`` None, returns the frame unchanged.

        ``timestamp_s`` is the frame's presentation time (live streams drop frames, so the time
        between processed frames varies); None means "one frame at the processor's nominal rate".
        Every face found but not replaced is listed in ``SwapResult.unswapped``.
        """
        ...

    def reset(self) -> None:
        """Forget tracking state (e.g. after a scene cut or a source change)."""
        ...


class Engine(Protocol):
    name: str  # "neural" or "embedded"

    def describe(self) -> dict[str, object]:
        """What runs: engine name, models, execution providers actually in use."""
        ...

    def detect(self, frame: np.ndarray) -> list[Face]:
        """Detect faces (boxes, 5 keypoints), largest first. Thread-safe."""
        ...

    def prepare_source(self, image: np.ndarray) -> SourceFace:
        """Build a source identity from a BGR photo. Raises NoFaceError. Thread-safe."""
        ...

    def open_stream(self) -> FrameProcessor: ...
