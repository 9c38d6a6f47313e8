"""``swaprtc models list|download|verify``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from swaprtc.errors import ModelError
from swaprtc.models.download import DownloadPolicy
from swaprtc.models.integrity import drop_sidecar, sha256_file
from swaprtc.models.manifest import EMBEDDED, Manifest
from swaprtc.models.store import ModelStore
from swaprtc.settings import Settings


def describe(store: ModelStore, name: str, effective: tuple[list[str], str] | None = None) -> dict[str, Any]:
    """What ``models list`` shows for one model (no loading; a file is hashed only when its
    cached check is missing or stale)."""
    entry = store.entry(name)
    target = store.file_path(name)
    present = target.is_file()
    loaded = store.providers_in_use(name)
    verified = store.available(name)
    if loaded:
        providers, how = loaded, "loaded"
    elif present and target.suffix == ".onnx":
        providers, how = effective or (store.planned_providers(), "planned")
    else:
        providers, how = [], None
    if not present:
        state = "missing"
    elif store.expected_sha256(name) is None:
        state = "untrusted"
    else:
        state = "verified" if verified else "corrupt"
    return {
        "name": entry.name,
        "role": entry.role,
        "file": str(target),
        "size": entry.size if entry.size is not None else (target.stat().st_size if present else None),
        "licence": entry.licence,
        "sha256": store.expected_sha256(name),
        # Where the pinned digest comes from, so an operator can check it independently.
        "digest_source": entry.digest_source or None,
        "notes": entry.notes or None,
        "digest_pinned": store.expected_sha256(name) is not None,
        "present": present,
        "verified": verified,
        "state": state,
        "providers": providers,
        "providers_source": how,  # loaded | probe (read back from a small session) | planned
    }


def _verify(store: ModelStore, name: str) -> dict[str, Any]:
    """Re-hash the file (ignoring any cached check) and compare with the expected digest."""
    record = describe(store, name)
    target = store.file_path(name)
    if not target.is_file():
        return {**record, "status": "missing", "ok": False}
    drop_sidecar(target)
    try:
        store.path(name)
    except ModelError as exc:
        status = "untrusted" if exc.code == "model_untrusted" else "corrupt"
        got = sha256_file(target) if status == "untrusted" else None
        return {**record, "status": status, "ok": False, "error": exc.message, "actual_sha256": got}
    return {**describe(store, name), "status": "verified", "ok": True}


def _download(store: ModelStore, name: str) -> dict[str, Any]:
    try:
        store.ensure(name)
    except ModelError as exc:
        return {**describe(store, name), "status": "failed", "ok": False, "error": exc.message}
    return {**describe(store, name), "status": "verified", "ok": True}


def _names(args: argparse.Namespace, manifest: Manifest) -> tuple[list[str], bool]:
    """Selected names, and whether a missing file counts as a failure."""
    if args.names:
        for name in args.names:
            manifest.get(name)  # unknown names fail before any work
        return list(args.names), True
    if args.all:
        return manifest.names, True
    if args.action == "download":
        return list(EMBEDDED), True
    return manifest.names, False


def _human_size(size: int | None) -> str:
    if size is None:
        return "?"
    return f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.0f} kB"


def _print_table(records: list[dict[str, Any]]) -> None:
    for r in records:
        status = r.get("status") or r["state"]
        if not r["digest_pinned"]:
            status += ", no pinned digest"
        providers = ",".join(p.removesuffix("ExecutionProvider") for p in r["providers"]) or "-"
        size = _human_size(r["size"])
        print(f"{r['name']:<20} {r['role']:<10} {size:>9}  {status:<28} {providers:<16} {r['licence']}")
        if r.get("error"):
            print(f"    {r['error']}")
        if r.get("actual_sha256"):
            print(f"    file SHA-256: {r['actual_sha256']}")


def run_models(args: argparse.Namespace, settings: Settings) -> int:
    manifest = Manifest.load()
    progress = not args.json and sys.stderr.isatty()
    store = ModelStore(
        settings.models_dir,
        settings.providers,
        manifest,
        allow_download=args.action == "download",
        policy=DownloadPolicy(progress=progress),
    )
    names, required = _names(args, manifest)
    if args.action == "list":
        effective = store.effective_providers()
        records = [describe(store, n, effective) for n in names]
        failed = False
    elif args.action == "verify":
        records = [_verify(store, n) for n in names]
        failed = any(not r["ok"] and (required or r["status"] != "missing") for r in records)
    else:
        records = [_download(store, n) for n in names]
        failed = any(not r["ok"] for r in records)
    if args.json:
        print(json.dumps({"models_dir": str(store.models_dir), "models": records}, indent=2))
    else:
        _print_table(records)
    return 1 if failed else 0
