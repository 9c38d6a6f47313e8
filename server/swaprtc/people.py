"""Following people from frame to frame, so a source mapped to a person stays on that person.

A face carrying the engine's track id (``Face.track``: the embedded engine's tracker, the neural
engine's when it tracks between detector runs) is the person that track belonged to. A face
without one that overlaps a face of a recent frame is the same person. A face that matches
nobody is compared, when an identity embedding can be computed (neural engine: ArcFace), with the
people who are out of view and mapped to a source, so a mapping survives someone leaving and
coming back. Embeddings are computed only for mapped people and for newcomers while a mapped
person is away: nothing is spent when nobody is mapped.

Not thread-safe: ``identify`` runs on the stream's inference job, one frame at a time.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from swaprtc.engine import EmbedFn
from swaprtc.types import Face

SAME_FACE_IOU = 0.3  # a face overlapping a previous frame's face this much is the same person
SAME_PERSON_COSINE = 0.4  # ArcFace cosine similarity above which two faces are one person
ABSENT_FRAMES = 15  # frames without a sighting before overlap no longer links a person
MAX_REMEMBERED = 32  # people remembered while out of view (mapped ones are kept first)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, float(x2 - x1)) * max(0.0, float(y2 - y1))
    union = float((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Person:
    id: int
    box: np.ndarray  # where the person's face was last seen (frame pixels)
    seen: int  # frame number of the last sighting
    embedding: np.ndarray | None = None
    track: int | None = None  # the engine's track id at the last sighting


class PersonRegistry:
    def __init__(self) -> None:
        self.people: dict[int, Person] = {}
        self._next_id = 1
        self._frame = 0

    def reset(self) -> None:
        """Forget everyone (new peer connection; person ids restart)."""
        self.people.clear()
        self._next_id = 1
        self._frame = 0

    def identify(self, faces: Sequence[Face], mapped: Collection[int], embed: EmbedFn | None) -> list[int]:
        """A person id for each face. ``mapped`` are the ids that have a source mapped to them."""
        self._frame += 1
        ids: list[int | None] = [None] * len(faces)
        recent = [p for p in self.people.values() if self._frame - p.seen <= ABSENT_FRAMES]
        taken: set[int] = set()
        by_track = {p.track: p.id for p in recent if p.track is not None}
        for i, face in enumerate(faces):
            pid = by_track.get(face.track) if face.track is not None else None
            if pid is not None and pid not in taken:
                ids[i] = pid
                taken.add(pid)
        _match(
            ((iou(f.bbox, p.box), i, p.id) for i, f in enumerate(faces) for p in recent),
            SAME_FACE_IOU,
            ids,
            taken,
        )
        if embed is not None:
            away = {
                p.id: p.embedding
                for p in self.people.values()
                if p.id in mapped and p.id not in taken and p.embedding is not None
            }
            newcomers = [i for i in range(len(faces)) if ids[i] is None] if away else []
            embs = {i: _normalised(embed(faces[i])) for i in newcomers}
            scores = ((float(embs[i] @ e), i, pid) for i in newcomers for pid, e in away.items())
            _match(scores, SAME_PERSON_COSINE, ids, taken)
            for i in newcomers:
                if ids[i] is None:
                    ids[i] = self._new(faces[i], embs[i]).id
        out: list[int] = []
        for face, known in zip(faces, ids, strict=True):
            person = self.people[known] if known is not None else self._new(face, None)
            person.box, person.seen, person.track = face.bbox, self._frame, face.track
            if embed is not None and person.id in mapped and person.embedding is None:
                # Remember a mapped person's identity while they are in view, to know them again.
                person.embedding = _normalised(embed(face))
            out.append(person.id)
        self._forget(mapped)
        return out

    def _new(self, face: Face, embedding: np.ndarray | None) -> Person:
        person = Person(self._next_id, face.bbox, self._frame, embedding)
        self._next_id += 1
        self.people[person.id] = person
        return person

    def _forget(self, mapped: Collection[int]) -> None:
        if len(self.people) <= MAX_REMEMBERED:
            return
        # Drop the longest-absent unmapped people first.
        order = sorted(self.people.values(), key=lambda p: (p.id in mapped, p.seen))
        for person in order[: len(self.people) - MAX_REMEMBERED]:
            del self.people[person.id]


def _match(
    scored: Iterable[tuple[float, int, int]], threshold: float, ids: list[int | None], taken: set[int]
) -> None:
    """Link faces to people, best (score, face index, person) first, each at most once: a returning
    person is not taken by a look-alike that happened to be compared earlier."""
    for score, i, pid in sorted(scored, reverse=True):
        if score < threshold:
            break
        if ids[i] is None and pid not in taken:
            ids[i] = pid
            taken.add(pid)


def _normalised(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float32).reshape(-1)
    return v / max(float(np.linalg.norm(v)), 1e-12)
