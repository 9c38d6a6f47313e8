"""SHA-256 checks and the small sidecar that caches a successful check.

Hashing a 555 MB swapper takes seconds, so a verified file gets a ``<file>.verified`` sidecar
holding its digest, size and mtime; the check is redone only when one of those changes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def write_sidecar(path: Path, sha256: str) -> bool:
    """Record a successful check; False when the folder is read-only (e.g. a read-only Docker
    mount), in which case the file is simply re-hashed next time."""
    st = path.stat()
    record = {"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    tmp = path.with_name(path.name + ".verified.tmp")
    try:
        tmp.write_text(json.dumps(record), encoding="utf-8")
        os.replace(tmp, sidecar_path(path))
    except OSError:
        return False
    return True


def sidecar_matches(path: Path, sha256: str) -> bool:
    """True when the file is unchanged since it was verified against ``sha256``."""
    try:
        record = json.loads(sidecar_path(path).read_text(encoding="utf-8"))
        st = path.stat()
    except (OSError, ValueError):
        return False
    return (
        isinstance(record, dict)
        and record.get("sha256") == sha256
        and record.get("size") == st.st_size
        and record.get("mtime_ns") == st.st_mtime_ns
    )


def drop_sidecar(path: Path) -> None:
    # In a read-only folder the sidecar stays, but it cannot vouch for changed bytes (size/mtime).
    with contextlib.suppress(OSError):
        sidecar_path(path).unlink(missing_ok=True)
