"""A session's named source photos: every face found in each, the face picked, memory only.

The uploaded bytes are kept (not the decoded pixels, which can be ten times larger) so another face
of the same photo can be picked without uploading it again; all of it lives in the session object
and is dropped with it.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

import numpy as np

from swaprtc.engine import Engine
from swaprtc.errors import NoFaceError, SwapRTCError
from swaprtc.face_quality import FaceWarning, face_warnings
from swaprtc.faces import face_thumbnail
from swaprtc.rtc.upload import decode_image
from swaprtc.types import Face, SourceFace

MAX_SOURCES = 8
MAX_FACES = 20  # faces listed per photo (largest first): a crowd photo stays a small response
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,31}$")


class BadSourceNameError(SwapRTCError):
    code = "bad_source_name"


class BadFaceIndexError(SwapRTCError):
    code = "bad_face_index"


class UnknownSourceError(SwapRTCError):
    code = "unknown_source"
    http_status = 404


class TooManySourcesError(SwapRTCError):
    code = "too_many_sources"
    http_status = 409


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise BadSourceNameError(
            "a source name is 1 to 32 letters, digits, spaces, '_', '-' or '.', "
            "starting with a letter or digit"
        )
    return name


def parse_face_index(raw: object) -> int | None:
    """The ``face`` field: None when absent, else a non-negative integer."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool):
        raise BadFaceIndexError("face must be a face index (0, 1, ...)")
    try:
        index = int(raw)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise BadFaceIndexError("face must be a face index (0, 1, ...)") from None
    if index < 0:
        raise BadFaceIndexError("face must be a face index (0, 1, ...)")
    return index


def data_url(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


@dataclass(frozen=True, eq=False)
class FoundFace:
    face: Face
    thumbnail_jpeg: bytes
    warnings: tuple[FaceWarning, ...]


@dataclass(frozen=True, eq=False)
class NamedSource:
    name: str
    photo: bytes  # the upload as sent, for re-picking a face
    image_size: tuple[int, int]
    faces: tuple[FoundFace, ...]  # largest first, as the engine's detector orders them
    selected: int
    source: SourceFace
    found: int  # faces the detector found (``faces`` keeps the largest MAX_FACES)

    def warnings_of(self, index: int) -> list[dict[str, str]]:
        """A face's photo-quality warnings; for the selected face also what the engine found
        while preparing it (e.g. how much of the face is hidden), one warning per code."""
        found = [w.to_json() for w in self.faces[index].warnings]
        if index == self.selected:
            engine = {code: message for code, message in self.source.warnings}
            found = [{"code": w["code"], "message": engine.pop(w["code"], w["message"])} for w in found]
            found += [{"code": code, "message": message} for code, message in engine.items()]
        return found

    def response(self) -> dict[str, object]:
        """The JSON of POST /api/source and /api/source/select (docs/API.md)."""
        return {
            "name": self.name,
            "faces_found": self.found,
            "box": [round(float(v), 1) for v in self.source.face.bbox[:4]],
            "image_size": list(self.image_size),
            "thumbnail": data_url(self.source.thumbnail_jpeg),
            "warning": "several_faces" if self.found > 1 else None,
            "warnings": self.warnings_of(self.selected),
            "selected": self.selected,
            "faces": [
                {
                    "index": i,
                    "box": [round(float(v), 1) for v in f.face.bbox[:4]],
                    "score": round(float(f.face.score), 4),
                    "thumbnail": data_url(f.thumbnail_jpeg),
                    "warnings": self.warnings_of(i),
                }
                for i, f in enumerate(self.faces)
            ],
        }


def analyse_photo(
    engine: Engine, name: str, photo: bytes, max_pixels: int, face_index: int | None
) -> NamedSource:
    """Decode, find every face, pick one (``face_index`` or the largest) and prepare it.

    Runs on the inference executor: detection and source preparation are model work.
    """
    image = decode_image(photo, max_pixels)
    detected = engine.detect(image)
    if not detected:
        raise NoFaceError(
            "no face found in the source photo: use a clear, well-lit, front-facing photo of one face"
        )
    faces = tuple(
        FoundFace(face, face_thumbnail(image, face.bbox), tuple(face_warnings(image, face)))
        for face in detected[:MAX_FACES]
    )
    return _pick(engine, name, photo, image, faces, face_index, len(detected))


def repick(engine: Engine, entry: NamedSource, face_index: int, max_pixels: int) -> NamedSource:
    """Another face of the same photo, without the client uploading it again."""
    image = decode_image(entry.photo, max_pixels)
    return _pick(engine, entry.name, entry.photo, image, entry.faces, face_index, entry.found)


def _pick(
    engine: Engine,
    name: str,
    photo: bytes,
    image: np.ndarray,
    faces: tuple[FoundFace, ...],
    face_index: int | None,
    found: int,
) -> NamedSource:
    index = 0 if face_index is None else face_index
    if index >= len(faces):
        raise BadFaceIndexError(
            f"face {index} does not exist: pick one of the {len(faces)} face(s) listed, numbered from 0"
        )
    source = engine.prepare_source(image, faces[index].face)
    return NamedSource(name, photo, (image.shape[1], image.shape[0]), faces, index, source, found)


class SourceBook:
    """A session's named sources, at most ``MAX_SOURCES``, in upload order."""

    def __init__(self) -> None:
        self.entries: dict[str, NamedSource] = {}

    def check_room(self, name: str) -> None:
        if name not in self.entries and len(self.entries) >= MAX_SOURCES:
            raise TooManySourcesError(
                f"a session holds at most {MAX_SOURCES} sources; "
                "delete one first (DELETE /api/source?name=...)"
            )

    def put(self, entry: NamedSource) -> None:
        self.check_room(entry.name)
        self.entries[entry.name] = entry

    def get(self, name: str) -> NamedSource:
        entry = self.entries.get(name)
        if entry is None:
            raise UnknownSourceError(f"no source named {name!r} in this session")
        return entry

    def remove(self, name: str | None) -> None:
        if name is None:
            self.entries.clear()
        else:
            self.get(name)
            del self.entries[name]

    def prepared(self) -> dict[str, SourceFace]:
        return {name: entry.source for name, entry in self.entries.items()}
