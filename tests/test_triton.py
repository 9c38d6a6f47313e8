"""The shared inference tier against a real NVIDIA Triton Inference Server.

``swaprtc triton-repo`` writes a repository of the tiny contract models (and the real RetinaFace);
``tests/triton_server.py`` serves it with the tritonserver binary of the ``nvidia-pytriton`` wheel,
in a venv of a Python with a shared libpython (``.ci/run`` builds it; ``SWAPRTC_TRITON_PYTHON``
points elsewhere). Under ``CI=true`` a server that cannot start is a failure; elsewhere the tests
that need it skip when that venv is missing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from google.protobuf import text_format
from swaprtc.cli import main as cli_main
from swaprtc.inference.loader import NeuralRunners
from swaprtc.inference.local import OrtRunner
from swaprtc.inference.triton import (
    ClientPool,
    InferenceServerError,
    PixelInputRunner,
    TritonRunner,
    connect,
    model_info,
    triton_neural_runners,
)
from swaprtc.inference.triton_repo import (
    RepoOptions,
    batch_axis,
    checked_batch_rewrite,
    config_pbtxt,
    write_repository,
)
from swaprtc.models.manifest import Manifest
from swaprtc.models.store import ModelStore
from swaprtc.pipeline.detector import RETINA_MEAN_BGR
from swaprtc.pipeline.neural import NeuralEngine
from swaprtc.pipeline.swapper import load_emap
from swaprtc.settings import Settings, SettingsError
from swaprtc.types import SwapOptions
from tritonclient.grpc import model_config_pb2 as mc

from tests.conftest import models_cache_dir
from tests.rtc_client import SwapClient, SyntheticCamera
from tests.server_process import ROOT, free_port, server_process
from tests.tiny_models import (
    arcface_model,
    gfpgan_model,
    inswapper_model,
    scrfd_model,
    scrfd_zero_outputs,
    session,
)

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
TRITON_PYTHON = Path(
    os.environ.get("SWAPRTC_TRITON_PYTHON", str(ROOT / ".cache" / "triton-venv" / "bin" / "python"))
)
FACE = (slice(80, 165), slice(192, 260))  # rows, cols inside the astronaut's face
TINY = {
    "w600k_r50": arcface_model(),
    "inswapper_128": inswapper_model("invert"),
    "gfpgan_1.4": gfpgan_model(),
}


def tiny_store(folder: Path, retinaface: Path, models: dict[str, onnx.ModelProto] = TINY) -> ModelStore:
    """A model store holding the tiny stand-ins under their real names (manifest digests patched)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(retinaface, folder / retinaface.name)
    manifest = Manifest.load()
    digests = {}
    for name, model in models.items():
        data = model.SerializeToString()
        (folder / manifest.get(name).file).write_bytes(data)
        digests[name] = hashlib.sha256(data).hexdigest()
    patched = tuple(dataclasses.replace(e, sha256=digests.get(e.name, e.sha256)) for e in manifest)
    return ModelStore(folder, manifest=Manifest(patched), allow_download=False)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, model_store: ModelStore) -> ModelStore:
    return tiny_store(tmp_path_factory.mktemp("models"), model_store.ensure("retinaface_mnet025"))


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, store: ModelStore) -> Path:
    out = tmp_path_factory.mktemp("repo")
    # A few ms of queue delay: long enough for two sessions' calls to meet, short for latency.
    write_repository(store, out, RepoOptions(kind="cpu", queue_delay_us=8000), rewrite=checked_batch_rewrite)
    return out


def parse_config(path: Path) -> mc.ModelConfig:
    return text_format.Parse(path.read_text(encoding="utf-8"), mc.ModelConfig())


# --- the repository writer (no server needed) --------------------------------------------------
def test_repository_configs_follow_the_onnx_files(repo: Path, store: ModelStore) -> None:
    names = sorted(p.name for p in repo.iterdir())
    assert names == ["gfpgan_1.4", "inswapper_128", "inswapper_128_emap", "retinaface_mnet025", "w600k_r50"]
    det = parse_config(repo / "retinaface_mnet025" / "config.pbtxt")
    assert det.platform == "onnxruntime_onnx" and det.max_batch_size == 16  # dynamic axis in the file
    # Detectors take 8-bit pixels (NHWC) and normalise them in the graph: a quarter of the bytes.
    assert [i.name for i in det.input] == ["pixels"] and list(det.input[0].dims) == [-1, -1, 3]
    assert det.input[0].data_type == mc.TYPE_UINT8
    assert [o.name for o in det.output] == ["loc", "conf", "landmarks"]
    assert det.dynamic_batching.max_queue_delay_microseconds == 8000
    assert det.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    emb = parse_config(repo / "w600k_r50" / "config.pbtxt")
    assert list(emb.input[0].dims) == [3, 112, 112] and list(emb.output[0].dims) == [512]
    # InSwapper's export fixes the batch at 1; the batch-2 check passes for this graph, so the
    # repository holds a rewritten file with a dynamic axis.
    swap = parse_config(repo / "inswapper_128" / "config.pbtxt")
    assert swap.max_batch_size == 16 and list(swap.input[0].dims) == [3, 128, 128]
    swap_file = onnx.load(str(repo / "inswapper_128" / "1" / "model.onnx"))
    assert batch_axis(swap_file) == "dynamic"
    assert load_emap(repo / "inswapper_128" / "1" / "model.onnx").shape == (512, 512)  # emap kept last
    emap = parse_config(repo / "inswapper_128_emap" / "config.pbtxt")
    assert emap.max_batch_size == 0 and list(emap.input[0].dims) == [-1, 512]
    # Files that were not rewritten are copied byte for byte.
    assert (repo / "w600k_r50" / "1" / "model.onnx").read_bytes() == store.path("w600k_r50").read_bytes()


def test_a_model_that_fails_the_batch_check_stays_unbatched(tmp_path: Path, model_store: ModelStore) -> None:
    # The "colour" stand-in reshapes to [1,3,1,1]: a batch of two cannot equal two single runs.
    models = {**TINY, "inswapper_128": inswapper_model("colour")}
    store = tiny_store(tmp_path / "models", model_store.ensure("retinaface_mnet025"), models)
    written = write_repository(store, tmp_path / "repo", RepoOptions(), rewrite=checked_batch_rewrite)
    swap = next(m for m in written if m.name == "inswapper_128")
    assert swap.max_batch_size == 0 and "failed" in swap.batching
    config = parse_config(tmp_path / "repo" / "inswapper_128" / "config.pbtxt")
    assert config.max_batch_size == 0 and list(config.input[0].dims) == [1, 3, 128, 128]
    assert not config.HasField("dynamic_batching")
    # GPU defaults: instances on the GPU with the TensorRT accelerator in FP16.
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    trt = config.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert trt.name == "tensorrt" and trt.parameters["precision_mode"] == "FP16"
    assert (tmp_path / "repo" / "inswapper_128" / "1" / "model.onnx").read_bytes() == store.path(
        "inswapper_128"
    ).read_bytes()


@pytest.mark.parametrize("kind", ["retinaface", "scrfd"])
def test_pixel_input_detectors_see_the_same_input(kind: str, store: ModelStore) -> None:
    """The repository's uint8 detector gives bitwise the outputs of the original on the float
    blob the pipeline makes, through the client's exact inverse."""
    from swaprtc.inference.triton_repo import PIXEL_INPUTS, with_pixel_input

    if kind == "retinaface":
        original = onnx.load(str(store.path("retinaface_mnet025")))
    else:
        outputs = scrfd_zero_outputs(64)
        original = scrfd_model([o + np.float32(0.25) for o in outputs], size=64)
    pixel = PIXEL_INPUTS[kind]
    wrapped = with_pixel_input(original, pixel)
    image = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    if kind == "retinaface":
        blob = (image.astype(np.float32) - RETINA_MEAN_BGR).transpose(2, 0, 1)[None]
    else:
        blob = cv2.dnn.blobFromImage(image, 1.0 / 128.0, (64, 64), (127.5, 127.5, 127.5), swapRB=True)
    want = OrtRunner(session(original)).run({original.graph.input[0].name: blob})
    # What PixelInputRunner sends: the float blob turned back into its pixels.
    pixels = np.rint(blob.transpose(0, 2, 3, 1) / np.float32(pixel.scale) + np.float32(pixel.mean))
    got = OrtRunner(session(wrapped)).run({"pixels": pixels.astype(np.uint8)})
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)


def test_config_text_parses_for_every_option_combination(repo: Path, store: ModelStore) -> None:
    from swaprtc.inference.triton_repo import repo_entry

    entry, _ = repo_entry("w600k_r50", store.path("w600k_r50"), RepoOptions(), None)
    for options in (
        RepoOptions(kind="gpu", tensorrt=True, fp16=False, trt_cache_dir="/models/trt-cache", instances=2),
        RepoOptions(kind="gpu", tensorrt=False),
        RepoOptions(kind="cpu", max_batch=4, queue_delay_us=0),
    ):
        config = text_format.Parse(config_pbtxt(entry, options), mc.ModelConfig())
        assert config.name == "w600k_r50" and config.instance_group[0].count == options.instances
        accelerators = config.optimization.execution_accelerators.gpu_execution_accelerator
        assert len(accelerators) == (1 if options.kind == "gpu" and options.tensorrt else 0)


def test_link_makes_relative_links_for_files_kept_as_they_are(tmp_path: Path, store: ModelStore) -> None:
    models = tmp_path / "models"
    shutil.copytree(store.models_dir, models)
    local = ModelStore(models, manifest=store.manifest, allow_download=False)
    write_repository(local, models / "triton-repo", RepoOptions(link=True), names=["w600k_r50"])
    linked = models / "triton-repo" / "w600k_r50" / "1" / "model.onnx"
    # Relative: the same repository resolves where the volume is mounted elsewhere (Triton's /models).
    assert linked.is_symlink() and not os.readlink(linked).startswith("/")
    moved = tmp_path / "elsewhere"
    models.rename(moved)
    assert (moved / "triton-repo" / "w600k_r50" / "1" / "model.onnx").read_bytes() == (
        moved / "w600k_r50.onnx"
    ).read_bytes()


def test_cli_writes_the_installed_models(tmp_path: Path, model_store: ModelStore) -> None:
    """``swaprtc triton-repo`` with the real manifest: only verified models go in (here RetinaFace)."""
    model_store.ensure("retinaface_mnet025")
    out = tmp_path / "repo"
    code = cli_main(
        ["triton-repo", str(out), "--models-dir", str(models_cache_dir()), "--link", "--kind", "cpu"]
    )
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["retinaface_mnet025"]
    # The detector is rewritten (pixel input), so it is a file even with --link.
    written = out / "retinaface_mnet025" / "1" / "model.onnx"
    assert written.is_file() and not written.is_symlink()
    assert parse_config(out / "retinaface_mnet025" / "config.pbtxt").max_batch_size == 16
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli_main(["triton-repo", str(tmp_path / "none"), "--models-dir", str(empty)]) == 2


def test_serve_stops_with_a_clear_error_when_triton_is_not_there(model_store: ModelStore) -> None:
    """One process: the serving path imports no tritonclient until ``--inference-url`` is given,
    then ``swaprtc serve`` with no Triton there stops with a clear error, not a traceback."""
    model_store.ensure("retinaface_mnet025")
    url = f"grpc://127.0.0.1:{free_port()}"
    env = {**os.environ, "SWAPRTC_MODELS_DIR": str(models_cache_dir()), "SWAPRTC_AUTO_DOWNLOAD": "false"}
    code = (
        "import sys, swaprtc.factory, swaprtc.rtc.app, swaprtc.pipeline.neural, swaprtc.inference.loader\n"
        "print('tritonclient' in sys.modules, flush=True)\n"
        "from swaprtc.cli import main\n"
        f"sys.exit(main(['serve', '--port', '{free_port()}', '--inference-url', '{url}']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.stdout.splitlines()[0] == "False"
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"error [inference_unreachable]: cannot reach the inference server at {url}" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_server_is_a_clear_startup_error() -> None:
    with pytest.raises(InferenceServerError) as err:
        connect(f"grpc://127.0.0.1:{free_port()}")
    assert (
        err.value.code == "inference_unreachable" and "cannot reach the inference server" in err.value.message
    )
    with pytest.raises(SettingsError, match="grpc://HOST:PORT"):
        Settings(inference_url="http://127.0.0.1:8000")


# --- a real Triton server ----------------------------------------------------------------------
@dataclasses.dataclass
class Triton:
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def batch_sizes(self, model: str) -> dict[int, int]:
        """Executions per batch size, from Triton's own statistics."""
        pool = ClientPool(self.url)
        with pool.client() as c:
            stats = c.get_inference_statistics(model, as_json=True)
        pool.close()
        sizes: dict[int, int] = {}
        for entry in stats["model_stats"][0].get("batch_stats", []):
            sizes[int(entry["batch_size"])] = int(entry["compute_infer"]["count"])
        return sizes


@pytest.fixture(scope="module")
def triton(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Triton]:
    if not TRITON_PYTHON.exists():
        message = (
            f"{TRITON_PYTHON} not found: `bash .ci/run` builds the Triton venv (or set SWAPRTC_TRITON_PYTHON)"
        )
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    grpc_port, http_port, metrics_port = free_port(), free_port(), free_port()
    log_path = tmp_path_factory.mktemp("triton") / "triton.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                str(TRITON_PYTHON),
                str(ROOT / "tests" / "triton_server.py"),
                str(repo),
                "--grpc-port",
                str(grpc_port),
                "--http-port",
                str(http_port),
                "--metrics-port",
                str(metrics_port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Triton(f"grpc://127.0.0.1:{grpc_port}", proc, log_path)
    deadline = time.monotonic() + 90
    try:
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Triton did not start:\n{log_path.read_text(errors='replace')[-4000:]}")
            if b"serving " in log_path.read_bytes():
                try:
                    connect(server.url).close()
                    break
                except InferenceServerError:
                    pass
            time.sleep(0.5)
        yield server
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def local_runners(store: ModelStore) -> NeuralRunners:
    """The in-process reference: the same files on local ONNX Runtime."""
    swap = store.path("inswapper_128")
    return NeuralRunners(
        detector=OrtRunner(store.session("retinaface_mnet025")),
        detector_kind="retinaface",
        embedder=OrtRunner(store.session("w600k_r50")),
        swapper=OrtRunner(store.session("inswapper_128")),
        emap=load_emap(swap),
        enhancer=OrtRunner(store.session("gfpgan_1.4")),
    )


@pytest.mark.parametrize("shared_memory", ["on", "off"])
def test_runners_on_triton_equal_local_ones(triton: Triton, store: ModelStore, shared_memory: str) -> None:
    runners = triton_neural_runners(
        Settings(inference_url=triton.url, inference_shared_memory=shared_memory, models_dir=store.models_dir)
    )
    local = local_runners(store)
    assert runners.decisions["inference_shared_memory"] is (shared_memory == "on")
    np.testing.assert_array_equal(runners.emap, local.emap)  # fetched through the _emap model
    assert runners.models == {
        "detector": "retinaface_mnet025",
        "embedder": "w600k_r50",
        "swapper": "inswapper_128",
        "enhancer": "gfpgan_1.4",
    }
    rng = np.random.default_rng(0)
    pairs = [
        (runners.detector, local.detector),
        (runners.embedder, local.embedder),
        (runners.swapper, local.swapper),
    ]
    assert isinstance(runners.detector, PixelInputRunner)
    for remote, ref in pairs:
        assert remote.max_batch == 16 and remote.describe()["shared_memory"] is (shared_memory == "on")
        for rows in (1, 3, 1):  # twice the same shape: the second goes fully through shared memory
            feeds = {
                s.name: rng.random([rows, *[d or 64 for d in s.shape[1:]]]).astype(s.dtype)
                for s in remote.inputs
            }
            if remote is runners.detector:  # what RetinaFaceDetector feeds: BGR pixels - mean
                pixels = rng.integers(0, 256, (rows, 64, 96, 3)).astype(np.float32)
                feeds = {"input": (pixels - RETINA_MEAN_BGR).transpose(0, 3, 1, 2).copy()}
            got = remote.run(feeds)
            # The reference runs one row at a time: the local files may fix the batch at 1.
            singles = [ref.run({k: v[i : i + 1] for k, v in feeds.items()}) for i in range(rows)]
            for j, g in enumerate(got):
                want = np.concatenate([one[j] for one in singles])
                np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-5)
    for r in (runners.detector, runners.embedder, runners.swapper, runners.enhancer):
        assert isinstance(r, TritonRunner | PixelInputRunner)
        r.close()


def test_bench_suite_measures_both_transports(triton: Triton, store: ModelStore) -> None:
    from swaprtc.inference.triton_bench import run_triton_suite

    report = run_triton_suite(Settings(inference_url=triton.url, models_dir=store.models_dir), calls=3)
    assert set(report["stages"]) == {"detector", "embedder", "swapper", "enhancer"}
    for stage in report["stages"].values():
        assert stage["shared_memory"]["n"] == 3 and stage["grpc"]["p50_ms"] > 0
    assert report["stages"]["detector"]["sent_bytes"] == 640 * 640 * 3  # uint8 pixels
    assert report["stages"]["swapper"]["sent_bytes"] == (3 * 128 * 128 + 512) * 4


def test_gpu_suite_models_come_from_triton_with_an_inference_url(
    triton: Triton,
    store: ModelStore,
    face_landmark_path: Path,
    astronaut_bgr: np.ndarray,
    grace_bgr: np.ndarray,
) -> None:
    """``swaprtc bench --suite gpu --inference-url``: the suite's engine runs on the tier."""
    from swaprtc.inference.triton_bench import triton_models

    settings = Settings(inference_url=triton.url, models_dir=face_landmark_path.parent, auto_download=False)
    models = triton_models(settings)
    assert models.label == f"Triton at {triton.url}" and models.tracking is not None
    engine = models.engine(batching=True)
    assert engine.describe()["runners"]["detector"]["runner"] == "triton"
    local = NeuralEngine.from_runners(local_runners(store))
    got = engine.open_stream().process(astronaut_bgr, engine.prepare_source(grace_bgr), SwapOptions()).frame
    want = local.open_stream().process(astronaut_bgr, local.prepare_source(grace_bgr), SwapOptions()).frame
    np.testing.assert_array_equal(got, want)
    if engine.batching is not None:
        engine.batching.close()


def test_missing_and_mismatched_models_are_named(triton: Triton) -> None:
    with pytest.raises(InferenceServerError) as err:
        triton_neural_runners(Settings(inference_url=triton.url, detector="scrfd"))
    assert err.value.code == "inference_model_missing"
    assert "no ready model 'det_10g'" in err.value.message and "swaprtc triton-repo" in err.value.message
    pool = connect(triton.url)
    from swaprtc.inference.triton import _check_swapper, checked

    with pytest.raises(InferenceServerError) as err:
        checked(model_info(pool, "w600k_r50"), _check_swapper, pool)
    assert err.value.code == "inference_model_mismatch" and "input.1 [None, 3, 112, 112]" in err.value.message
    pool.close()


def test_two_streams_through_triton_equal_the_in_process_engine(
    triton: Triton, store: ModelStore, astronaut_bgr: np.ndarray, grace_bgr: np.ndarray, obama_bgr: np.ndarray
) -> None:
    """Two FrameProcessors at once on the Triton runners: every frame equals the local engine's,
    and Triton's dynamic batcher merged their calls."""
    remote = NeuralEngine.from_runners(
        triton_neural_runners(Settings(inference_url=triton.url, models_dir=store.models_dir))
    )
    local = NeuralEngine.from_runners(local_runners(store))
    before = triton.batch_sizes("retinaface_mnet025")
    sources = {"a": grace_bgr, "b": obama_bgr}
    frames = [astronaut_bgr, cv2.flip(astronaut_bgr, 1), cv2.resize(astronaut_bgr, None, fx=0.8, fy=0.8)]
    options = {"a": SwapOptions(), "b": SwapOptions(enhance=True, strength=0.7)}
    results: dict[str, list[np.ndarray]] = {}
    barrier = threading.Barrier(2)

    def run(key: str) -> None:
        source = remote.prepare_source(sources[key])
        stream = remote.open_stream()
        out = []
        for i in range(6):
            barrier.wait(60)  # frames arrive together, as from two cameras: their detector calls meet
            out.append(
                stream.process(frames[i % len(frames)], source, options[key], timestamp_s=i / 30).frame
            )
        results[key] = out

    threads = [threading.Thread(target=run, args=(k,)) for k in sources]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert set(results) == {"a", "b"}
    for key in sources:
        source = local.prepare_source(sources[key])
        stream = local.open_stream()
        for i, got in enumerate(results[key]):
            want = stream.process(frames[i % len(frames)], source, options[key], timestamp_s=i / 30).frame
            np.testing.assert_array_equal(got, want, err_msg=f"stream {key} frame {i}")
            assert np.abs(got.astype(int) - frames[i % len(frames)]).mean() > 1  # the face was swapped
    after = triton.batch_sizes("retinaface_mnet025")
    grown = {b: n - before.get(b, 0) for b, n in after.items() if n > before.get(b, 0)}
    assert any(b > 1 for b in grown), f"no batch larger than 1 formed: {grown}"


async def test_real_server_streams_two_sessions_through_triton(
    triton: Triton,
    store: ModelStore,
    face_landmark_path: Path,
    astronaut_bgr: np.ndarray,
    grace_bgr: np.ndarray,
) -> None:
    """``swaprtc serve --workers 2 --inference-url``: two aiortc sessions, one per worker process,
    stream through the shared tier (the worker processes of a box share one model server).

    Batch formation is asserted by the lockstep FrameProcessor test above: here each session's
    calls follow one another, so whether two sessions' calls meet in Triton's queue depends on
    the machine's load, and a test must not."""
    before = {m: triton.batch_sizes(m) for m in ("retinaface_mnet025", "inswapper_128")}
    env = {"SWAPRTC_ENGINE": "auto", "SWAPRTC_WORKERS": "2"}
    with server_process(["--inference-url", triton.url], env=env) as server:
        async with SwapClient(server.base) as one, SwapClient(server.base) as two:
            for client in (one, two):
                session = await client.create_session()
                engine = session["engine"]
                assert engine["engine"] == "neural" and engine["detect_every"] == 5
                detector = engine["runners"]["detector"]
                assert detector["runner"] == "triton" and detector["model"] == "retinaface_mnet025"
                assert detector["shared_memory"] is True and engine["gpu"]["inference_url"] == triton.url
                status, body = await client.upload_source(cv2.imencode(".png", grace_bgr)[1].tobytes())
                assert status == 200, body
            assert {one.session_id[:3], two.session_id[:3]} == {"w0.", "w1."}  # one per worker
            await asyncio.gather(
                one.connect(SyntheticCamera(astronaut_bgr, 15)),
                two.connect(SyntheticCamera(astronaut_bgr, 15)),
            )
            await asyncio.sleep(3.0)
        log = server.log()
    assert "inference server" in log
    local = NeuralEngine.from_runners(local_runners(store))
    expected = (
        local.open_stream().process(astronaut_bgr, local.prepare_source(grace_bgr), SwapOptions()).frame
    )
    for client in (one, two):
        swapped = 0
        for r in client.received:
            # A frame either carries the face the local engine made (inverted by the stand-in
            # swapper, within VP8's noise) or, past its deadline on this busy machine, a hidden
            # face; never the camera's own face.
            to_expected = np.abs(r.image[FACE].astype(int) - expected[FACE]).mean()
            to_camera = np.abs(r.image[FACE].astype(int) - astronaut_bgr[FACE]).mean()
            assert to_camera > 8, to_camera
            swapped += to_expected < 10 and to_camera > 4 * to_expected
        assert swapped >= 3, (swapped, len(client.received))
    served = {}
    for model, sizes in before.items():
        after = triton.batch_sizes(model)
        served[model] = sum(b * n for b, n in after.items()) - sum(b * n for b, n in sizes.items())
    # Every processed frame of both sessions went through Triton's detector and swapper.
    assert min(served.values()) >= 2 * 5, served
