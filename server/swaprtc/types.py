"""The plain data that flows through the pipeline.

A frame is a BGR uint8 ``np.ndarray`` of shape (H, W, 3); faces found in it are ``Face`` values.
Arrays inside frozen dataclasses are treated as read-only by convention.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face in frame pixel coordinates."""

    bbox: np.ndarray  # (4,) float32: x1, y1, x2, y2
    score: float
    kps: np.ndarray  # (5, 2) float32: left eye, right eye, nose, left mouth, right mouth (image left/right)
    mesh: np.ndarray | None = None  # (468, 2) float32 dense landmarks when an engine computed them
    track: int | None = None  # the engine's track id: the same face in successive frames of a stream

    @property
    def width(self) -> float:
        return float(self.bbox[2] - self.bbox[0])

    @property
    def height(self) -> float:
        return float(self.bbox[3] - self.bbox[1])

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)


P = TypeVar("P")


@dataclass(frozen=True, eq=False)
class SourceFace:
    """A prepared source identity: computed once per upload, kept in memory only.

    ``payload`` is engine-specific (an identity embedding for the neural engine, a texture and
    mesh for the embedded engine); only the engine that made it reads it.
    """

    engine: str
    face: Face
    faces_found: int
    thumbnail_jpeg: bytes
    payload: Any
    # (code, message) problems the engine found while preparing it, e.g. ("turned", ...) when
    # much of the face is hidden in the photo; shown to the user with the upload's warnings.
    warnings: tuple[tuple[str, str], ...] = ()

    def payload_for(self, engine: str, kind: type[P]) -> P:
        """The payload, checked to be ``engine``'s own (a source made by another engine is refused)."""
        if self.engine != engine or not isinstance(self.payload, kind):
            raise ValueError(f"source face was prepared by the {self.engine!r} engine, not {engine!r}")
        return self.payload


@dataclass(frozen=True)
class SwapOptions:
    """Per-session live settings that change how a frame is processed."""

    many_faces: bool = False
    strength: float = 1.0  # 0 keeps the target identity, 1 is the full source identity
    enhance: bool = False
    enhance_blend: float = 0.8
    enhance_every: int = 1  # run the enhancer every Nth frame; reuse the last enhanced face between
    mouth_mask: bool = False  # keep the target's own mouth interior (neural: pipeline/mouth_mask.py)
    mouth_mask_blur: float = 0.3  # 0..1, feathering of the mouth mask edge
    mouth_mask_padding: float = 0.1  # 0..1, how far the mouth mask reaches beyond the mouth
    color_correction: bool = False  # match the swapped face's colour to the target's lighting
    shape: float = 1.0  # embedded: 0..1, how far the target's features move towards the source's proportions


@dataclass(frozen=True, eq=False)
class SwapResult:
    frame: np.ndarray  # BGR uint8, same shape as the input
    faces: tuple[Face, ...]  # faces found in the input frame
    swapped: int  # how many faces were replaced
    timings_ms: dict[str, float] = field(default_factory=dict)
    # Faces present in ``frame`` but NOT replaced (not selected in one-face mode, too small, mesh
    # rejected, ...). With a source set they must never be shown as they are: the caller hides them.
    unswapped: tuple[Face, ...] = ()
