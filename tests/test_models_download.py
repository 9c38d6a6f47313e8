"""Model downloads against a local aiohttp server on 127.0.0.1 (run in a thread) with scriptable
misbehaviour: dropped connections, ignored Range headers, 503s, wrong bytes, 404 mirrors."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from swaprtc.errors import ModelError
from swaprtc.models.download import DownloadPolicy, download
from swaprtc.models.manifest import Manifest
from swaprtc.models.store import ModelStore, choose_providers


@dataclass
class Served:
    data: bytes
    drop_first: bool = False  # first response sends half the body, then cuts the connection
    ignore_range: bool = False  # answer 200 with the whole body even to a Range request
    fail_first: int = 0  # answer 503 this many times first
    status: int = 200


@dataclass
class FileServer:
    files: dict[str, Served] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def headers_for(self, path: str) -> list[dict[str, str]]:
        return [h for p, h in self.requests if p == path]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.path, dict(request.headers)))
        spec = self.files.get(request.path)
        if spec is None:
            return web.Response(status=404)
        if spec.status != 200:
            return web.Response(status=spec.status)
        if spec.fail_first > 0:
            spec.fail_first -= 1
            return web.Response(status=503)
        data = spec.data
        if spec.drop_first:
            spec.drop_first = False
            resp = web.StreamResponse(headers={"Content-Length": str(len(data))})
            await resp.prepare(request)
            await resp.write(data[: len(data) // 2])
            await asyncio.sleep(0.05)  # let the half body reach the client before the cut
            assert request.transport is not None
            request.transport.abort()
            return resp
        byte_range = request.headers.get("Range")
        if byte_range and not spec.ignore_range:
            start = int(byte_range.removeprefix("bytes=").split("-")[0])
            return web.Response(
                status=206,
                body=data[start:],
                headers={"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"},
            )
        return web.Response(body=data)


class RunningServer:
    """Context manager: serve a FileServer on an ephemeral port in a background thread."""

    def __init__(self, server: FileServer) -> None:
        self.server = server
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> FileServer:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self.server.handle)
        self.runner = web.AppRunner(app, access_log=None)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.server.port = self.runner.addresses[0][1]
        self.thread.start()
        return self.server

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


# --- helpers --------------------------------------------------------------------------------------

FAST = DownloadPolicy(retries=3, backoff_s=0.001, timeout_s=5.0, progress=False)


def payload(n: int = 300_000, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_for(
    name: str, file: str, digest: str | None, sources: list[dict[str, Any]], size: int | None = None
) -> Manifest:
    return Manifest.from_dict(
        {
            "models": [
                {
                    "name": name,
                    "role": "detector",
                    "file": file,
                    "sha256": digest,
                    "size": size,
                    "licence": "test",
                    "sources": sources,
                }
            ]
        }
    )


def store_for(tmp_path: Path, manifest: Manifest, **kw: Any) -> ModelStore:
    return ModelStore(tmp_path / "models", ("CPUExecutionProvider",), manifest, policy=FAST, env={}, **kw)


@pytest.fixture()
def http() -> Iterator[FileServer]:
    with RunningServer(FileServer()) as server:
        yield server


# --- plain downloads ------------------------------------------------------------------------------


def test_good_file_downloads_and_verifies(tmp_path: Path, http: FileServer) -> None:
    data = payload()
    http.files["/m.onnx"] = Served(data)
    store = store_for(
        tmp_path, manifest_for("m", "m.onnx", sha(data), [{"urls": [http.url("/m.onnx")]}], size=len(data))
    )
    assert not store.available("m")
    path = store.ensure("m")
    assert path.read_bytes() == data
    assert store.available("m") and store.path("m") == path
    assert not list(path.parent.glob("*.part"))


def test_wrong_digest_deletes_file_and_names_file_and_url(tmp_path: Path, http: FileServer) -> None:
    http.files["/m.onnx"] = Served(payload())
    store = store_for(tmp_path, manifest_for("m", "m.onnx", sha(b"other"), [{"urls": [http.url("/m.onnx")]}]))
    with pytest.raises(ModelError) as err:
        store.ensure("m")
    message = err.value.message
    assert "m.onnx" in message and http.url("/m.onnx") in message and "does not match" in message
    assert "swaprtc models verify m" in message
    assert list((tmp_path / "models").iterdir()) == []  # neither the file nor a .part survives
    with pytest.raises(ModelError, match="missing"):
        store.path("m")


def test_interrupted_download_resumes_with_range(tmp_path: Path, http: FileServer) -> None:
    data = payload(400_000, seed=1)
    http.files["/big.onnx"] = Served(data, drop_first=True)
    store = store_for(
        tmp_path,
        manifest_for("m", "big.onnx", sha(data), [{"urls": [http.url("/big.onnx")]}], size=len(data)),
    )
    assert store.ensure("m").read_bytes() == data
    first, second = http.headers_for("/big.onnx")
    assert "Range" not in first
    start = int(second["Range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < start < len(data)  # resumed from what the first attempt kept, not from zero


def test_server_ignoring_range_still_gives_correct_file(tmp_path: Path, http: FileServer) -> None:
    data = payload(400_000, seed=2)
    http.files["/big.onnx"] = Served(data, drop_first=True, ignore_range=True)
    store = store_for(tmp_path, manifest_for("m", "big.onnx", sha(data), [{"urls": [http.url("/big.onnx")]}]))
    assert store.ensure("m").read_bytes() == data
    assert "Range" in http.headers_for("/big.onnx")[1]  # asked to resume, got a 200, restarted cleanly


def test_stale_partial_file_is_discarded_after_a_bad_resume(tmp_path: Path, http: FileServer) -> None:
    data = payload(50_000, seed=6)
    http.files["/m.onnx"] = Served(data)
    models = tmp_path / "models"
    models.mkdir()
    (models / "m.onnx.part").write_bytes(b"\0" * 1000)  # left over from some other file
    store = store_for(tmp_path, manifest_for("m", "m.onnx", sha(data), [{"urls": [http.url("/m.onnx")]}]))
    assert store.ensure("m").read_bytes() == data
    first, second = http.headers_for("/m.onnx")
    assert first["Range"] == "bytes=1000-" and "Range" not in second


def test_retries_503_with_exponential_backoff(tmp_path: Path, http: FileServer) -> None:
    data = payload(10_000)
    http.files["/m.onnx"] = Served(data, fail_first=2)
    waits: list[float] = []
    dest = tmp_path / "m.onnx"
    policy = DownloadPolicy(retries=4, backoff_s=0.5, timeout_s=5.0, progress=False)
    download([http.url("/m.onnx")], dest, sha256=sha(data), policy=policy, sleep=waits.append)
    assert dest.read_bytes() == data
    assert waits == [0.5, 1.0]
    assert len(http.headers_for("/m.onnx")) == 3


def test_gives_up_after_retries(tmp_path: Path, http: FileServer) -> None:
    http.files["/m.onnx"] = Served(b"x", fail_first=99)
    with pytest.raises(ModelError, match="HTTP 503"):
        download(
            [http.url("/m.onnx")], tmp_path / "m.onnx", sha256=sha(b"x"), policy=FAST, sleep=lambda s: None
        )
    assert len(http.headers_for("/m.onnx")) == FAST.retries


def test_mirror_fallback_after_404_and_bad_bytes(tmp_path: Path, http: FileServer) -> None:
    data = payload(50_000)
    http.files["/bad.onnx"] = Served(payload(50_000, seed=9))
    http.files["/good.onnx"] = Served(data)
    urls = [http.url("/gone.onnx"), http.url("/bad.onnx"), http.url("/good.onnx")]
    store = store_for(tmp_path, manifest_for("m", "m.onnx", sha(data), [{"urls": urls}]))
    assert store.ensure("m").read_bytes() == data
    assert [p for p, _ in http.requests] == ["/gone.onnx", "/bad.onnx", "/good.onnx"]


def test_all_sources_failing_gives_actionable_error(tmp_path: Path, http: FileServer) -> None:
    urls = [http.url("/a.onnx"), http.url("/b.onnx")]
    store = store_for(tmp_path, manifest_for("m", "m.onnx", sha(b"x"), [{"urls": urls}]))
    with pytest.raises(ModelError) as err:
        store.ensure("m")
    assert err.value.code == "model_download_failed"
    for text in (*urls, "HTTP 404", str(tmp_path / "models" / "m.onnx"), "swaprtc models verify m"):
        assert text in err.value.message


# --- archive members ------------------------------------------------------------------------------


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    return buf.getvalue()


def test_zip_member_is_extracted_and_verified(tmp_path: Path, http: FileServer) -> None:
    model = payload(80_000, seed=3)
    archive = zip_bytes({"pack/readme.txt": b"hi", "pack/det.onnx": model})
    http.files["/pack.zip"] = Served(archive)
    source = {
        "urls": [http.url("/pack.zip")],
        "archive_sha256": sha(archive),
        "member": {"path": "pack/det.onnx", "format": "raw"},
    }
    store = store_for(tmp_path, manifest_for("m", "det.onnx", sha(model), [source]))
    assert store.ensure("m").read_bytes() == model
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["det.onnx", "det.onnx.verified"]


def test_python_bytes_literal_member_is_parsed_not_executed(tmp_path: Path, http: FileServer) -> None:
    model = payload(20_000, seed=4)
    # Executing this module would raise; the manager must only parse it.
    source_text = b"raise SystemExit('executed!')\nWEIGHTS = " + repr(model).encode() + b"\nOTHER = 1\n"
    wheel = zip_bytes({"pkg/weights.py": source_text, "pkg-1.0.dist-info/METADATA": b"Name: pkg\n"})
    http.files["/pkg-1.0-py3-none-any.whl"] = Served(wheel)
    source = {
        "urls": [http.url("/pkg-1.0-py3-none-any.whl")],
        "archive_sha256": sha(wheel),
        "member": {"path": "pkg/weights.py", "format": "python-bytes-literal", "variable": "WEIGHTS"},
    }
    store = store_for(tmp_path, manifest_for("m", "m.onnx", sha(model), [source]))
    assert store.ensure("m").read_bytes() == model


def test_archive_with_wrong_digest_is_rejected(tmp_path: Path, http: FileServer) -> None:
    model = payload(1000)
    archive = zip_bytes({"det.onnx": model})
    http.files["/pack.zip"] = Served(archive)
    source = {
        "urls": [http.url("/pack.zip")],
        "archive_sha256": sha(b"not it"),
        "member": {"path": "det.onnx", "format": "raw"},
    }
    store = store_for(tmp_path, manifest_for("m", "det.onnx", sha(model), [source]))
    with pytest.raises(ModelError, match="does not match"):
        store.ensure("m")
    assert list((tmp_path / "models").iterdir()) == []


def test_pypi_source_uses_a_local_wheel_with_the_pinned_digest(tmp_path: Path) -> None:
    model = payload(5000, seed=5)
    wheel = zip_bytes({"tiny_pkg/data/m.bin": model})
    models = tmp_path / "models"
    models.mkdir()
    (models / "tiny_pkg-0.1.0-py3-none-any.whl").write_bytes(wheel)
    source = {
        "type": "pypi",
        "package": "tiny-pkg",
        "version": "0.1.0",
        "wheel_sha256": sha(wheel),
        "member": {"path": "tiny_pkg/data/m.bin", "format": "raw"},
    }
    store = store_for(tmp_path, manifest_for("m", "m.bin", sha(model), [source]))
    assert store.ensure("m").read_bytes() == model


# --- refusing bad files ---------------------------------------------------------------------------


def tiny_onnx() -> bytes:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["output"])],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def test_session_loads_once_and_reports_providers(tmp_path: Path, http: FileServer) -> None:
    data = tiny_onnx()
    http.files["/t.onnx"] = Served(data)
    store = store_for(tmp_path, manifest_for("t", "t.onnx", sha(data), [{"urls": [http.url("/t.onnx")]}]))
    assert store.providers_in_use("t") == []
    session = store.session("t")
    assert store.session("t") is session
    assert store.providers_in_use("t") == ["CPUExecutionProvider"]
    out = session.run(None, {"input": np.array([[1.0, 2.0, 3.0]], np.float32)})[0]
    assert out.tolist() == [[1.0, 2.0, 3.0]]


def test_present_but_corrupt_file_is_refused(tmp_path: Path, http: FileServer) -> None:
    data = tiny_onnx()
    http.files["/t.onnx"] = Served(data)
    manifest = manifest_for("t", "t.onnx", sha(data), [{"urls": [http.url("/t.onnx")]}])
    good = store_for(tmp_path, manifest)
    path = good.ensure("t")
    corrupt = bytearray(data)
    corrupt[-1] ^= 0xFF
    path.write_bytes(bytes(corrupt))
    os.utime(path, ns=(1, 1))  # even a stale sidecar cannot vouch for changed bytes
    offline = store_for(tmp_path, manifest, allow_download=False)
    assert not offline.available("t")
    for call in (offline.path, offline.session, offline.ensure):
        with pytest.raises(ModelError, match="failed verification") as err:
            call("t")
        assert err.value.code == "model_unverified"
    # Allowed to download, ensure replaces the bad file with a verified one.
    assert store_for(tmp_path, manifest).ensure("t").read_bytes() == data


def test_read_only_models_folder_still_verifies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tiny_onnx()
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "t.onnx").write_bytes(data)

    def read_only(*args: object, **kwargs: object) -> None:
        raise PermissionError("read-only file system")

    # Tests run as root here, so chmod cannot make a folder read-only: fail the writes instead.
    monkeypatch.setattr(Path, "write_text", read_only)
    store = store_for(tmp_path, manifest_for("t", "t.onnx", sha(data), []), allow_download=False)
    assert store.path("t") == folder / "t.onnx"
    assert store.available("t")
    assert not (folder / "t.onnx.verified").exists()  # nothing cached: the next check hashes again
    assert store.session("t").get_providers() == ["CPUExecutionProvider"]


def test_missing_file_without_download_is_refused(tmp_path: Path) -> None:
    store = store_for(tmp_path, manifest_for("m", "m.onnx", sha(b"x"), []), allow_download=False)
    with pytest.raises(ModelError, match="swaprtc models download m") as err:
        store.session("m")
    assert err.value.code == "model_missing"


def test_model_without_published_digest_needs_an_operator_pin(tmp_path: Path) -> None:
    data = tiny_onnx()
    manifest = manifest_for("gfp gan", "g.onnx", None, [])
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "g.onnx").write_bytes(data)
    store = store_for(tmp_path, manifest)
    with pytest.raises(ModelError, match="SWAPRTC_TRUST_GFP_GAN") as err:
        store.path("gfp gan")
    assert err.value.code == "model_untrusted"
    assert not store.available("gfp gan")
    pinned = ModelStore(
        tmp_path / "models",
        ("CPUExecutionProvider",),
        manifest,
        env={"SWAPRTC_TRUST_GFP_GAN": sha(data).upper()},
    )
    assert pinned.path("gfp gan").read_bytes() == data
    wrong = ModelStore(tmp_path / "models", manifest=manifest, trusted={"gfp gan": sha(b"other")})
    with pytest.raises(ModelError, match="failed verification"):
        wrong.path("gfp gan")


def test_provider_choice_follows_preference_and_availability() -> None:
    preferred = [
        "TensorrtExecutionProvider",
        "CUDAExecutionProvider",
        "CoreMLExecutionProvider",
        "CPUExecutionProvider",
    ]
    assert choose_providers(preferred, ["CPUExecutionProvider", "CUDAExecutionProvider"]) == [
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]
    assert choose_providers(["CUDAExecutionProvider"], ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]


def test_unknown_model_and_bad_manifest_are_clear_errors() -> None:
    with pytest.raises(ModelError, match="unknown model 'nope'"):
        Manifest.from_dict({"models": []}).get("nope")
    with pytest.raises(ModelError, match="not a SHA-256"):
        manifest_for("m", "m.onnx", "abc", [])
