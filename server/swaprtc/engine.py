"""The engine interface shared by the neural and the embedded engines.

An engine holds loaded models (created once per process, shared by all sessions). Per-stream state
such as landmark tracking lives in a ``FrameProcessor`` that each session opens for itself, so two
sessions never share mutable state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from swaprtc.types import Face, SourceFace, SwapOptions, SwapResult

EmbedFn = Callable[[Face], np.ndarray]  # a face of the current frame -> L2-normalised identity embedding


class Casting(Protocol):
    """Which source each face of a frame gets, when a session maps several sources to people.

    The stream layer owns it (one per session); engines call ``choose`` once per processed frame
    with every face they found, largest first, on the inference thread.
    """

    def choose(
        self, faces: Sequence[Face], many_faces: bool, embed: EmbedFn | None
    ) -> list[SourceFace | None]:
        """One entry per face: the source to swap in, or None to leave it (the caller hides it).

        ``embed`` lets a casting follow people by identity (neural engine); without it, people are
        followed by position from frame to frame (embedded engine, whose faces come from tracks).
        """
        ...

    @property
    def assigned(self) -> bool:
        """Whether some person has a source of their own. An engine that follows only the largest
        face while "swap every face" is off must then follow every face, or a person clicked in
        the video would never get their source."""
        ...


def single_source(
    faces: Sequence[Face], source: SourceFace | None, many_faces: bool
) -> list[SourceFace | None]:
    """The choice without a casting: ``source`` for every face, or only the largest (the first)."""
    if source is None:
        return [None] * len(faces)
    return [source if many_faces or i == 0 else None for i in range(len(faces))]


class FrameProcessor(Protocol):
    """Per-stream processing state (tracking, smoothing). Not thread-safe: one stream, one user."""

    def process(
        self,
        frame: np.ndarray,
        source: SourceFace | None,
        options: SwapOptions,
        timestamp_s: float | None = None,
        casting: Casting | None = None,
    ) -> SwapResult:
        """Swap faces in one BGR frame. With ``source`` and ``casting`` None, returns it unchanged.

        ``timestamp_s`` is the frame's presentation time (live streams drop frames, so the time
        between processed frames varies); None means "one frame at the processor's nominal rate".
        ``casting`` (several sources mapped to people) decides each face's source; without it
        ``single_source`` does. Every face found but not replaced is listed in ``SwapResult.unswapped``.
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

    def prepare_source(self, image: np.ndarray, face: Face | None = None) -> SourceFace:
        """Build a source identity from a BGR photo: from ``face`` (one of ``detect(image)``'s
        faces) or, when None, the largest face. Raises NoFaceError. Thread-safe."""
        ...

    def open_stream(self) -> FrameProcessor: ...
