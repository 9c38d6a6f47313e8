"""A session's casting: which of its named sources each person in the stream gets.

The event loop changes sources and mappings (uploads, ``assign`` messages) by replacing an
immutable ``CastState``; the stream's inference job reads one state per frame and records who it
saw (``last``), which the loop reads back for stats and for finding the person at a clicked point.
Plain attribute replacement is atomic in Python, so the two threads never see half an update.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from swaprtc.engine import EmbedFn
from swaprtc.people import PersonRegistry
from swaprtc.types import Face, SourceFace

DEFAULT_SOURCE = "default"


@dataclass(frozen=True)
class CastState:
    sources: Mapping[str, SourceFace] = field(default_factory=dict)  # insertion order = upload order
    assignments: Mapping[int, str] = field(default_factory=dict)  # person id -> source name

    @property
    def default_name(self) -> str | None:
        """The source unmapped faces get: the one named "default", else the oldest."""
        if DEFAULT_SOURCE in self.sources:
            return DEFAULT_SOURCE
        return next(iter(self.sources), None)


@dataclass(frozen=True, eq=False)
class CastFace:
    """One face of the latest processed frame: who it is and which source it was given."""

    person: int
    face: Face
    source: str | None


class SessionCasting:
    """Implements ``swaprtc.engine.Casting`` for one session."""

    def __init__(self) -> None:
        self.state = CastState()
        self.registry = PersonRegistry()
        self.last: tuple[CastFace, ...] = ()

    # --- event loop side -----------------------------------------------------------------------
    def set_sources(self, sources: Mapping[str, SourceFace]) -> None:
        """Replace the sources; mappings to a source that is gone are dropped."""
        kept = {p: n for p, n in self.state.assignments.items() if n in sources}
        self.state = CastState(dict(sources), kept)

    def assign(self, person: int, name: str) -> None:
        self.state = replace(self.state, assignments={**self.state.assignments, person: name})

    def unassign(self, person: int) -> bool:
        if person not in self.state.assignments:
            return False
        self.state = replace(
            self.state, assignments={p: n for p, n in self.state.assignments.items() if p != person}
        )
        return True

    @property
    def default_source(self) -> SourceFace | None:
        name = self.state.default_name
        return self.state.sources[name] if name is not None else None

    @property
    def assigned(self) -> bool:
        return bool(self.state.assignments)

    # --- inference side ------------------------------------------------------------------------
    def choose(
        self, faces: Sequence[Face], many_faces: bool, embed: EmbedFn | None
    ) -> list[SourceFace | None]:
        state = self.state
        ids = self.registry.identify(faces, state.assignments.keys(), embed)
        default = state.default_name
        names: list[str | None] = []
        for i, person in enumerate(ids):
            mapped = state.assignments.get(person)
            if mapped is not None:
                names.append(mapped)
            elif default is not None and (many_faces or i == 0):
                # Unmapped faces follow "swap every face": all of them, or only the largest.
                names.append(default)
            else:
                names.append(None)
        self.last = tuple(CastFace(p, f, n) for p, f, n in zip(ids, faces, names, strict=True))
        return [state.sources[n] if n is not None else None for n in names]
