"""The ModelRunner interface over local ONNX Runtime sessions, and the session factory's options."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from swaprtc.inference.local import OrtRunner, as_runner, batch_bucket, batch_limit
from swaprtc.inference.runner import ModelRunner, TensorSpec, describe_runner, runner_providers
from swaprtc.inference.sessions import (
    CPU,
    CUDA,
    TENSORRT,
    RuntimeOptions,
    choose_providers,
    create_session,
    cuda_graph_in_use,
    provider_list,
)
from swaprtc.pipeline.swapper import InSwapper

from tests.tiny_models import arcface_model, inswapper_model, make_emap, session


def test_runner_reads_the_contract_from_the_session() -> None:
    runner = OrtRunner(session(inswapper_model("invert")))
    assert isinstance(runner, ModelRunner)
    assert [s.name for s in runner.inputs] == ["target", "source"]
    assert runner.inputs[0] == TensorSpec("target", (1, 3, 128, 128), np.float32)
    assert runner.outputs[0].shape == (1, 3, 128, 128)
    assert runner.max_batch == 1  # the export fixes the batch at 1
    dynamic = OrtRunner(session(arcface_model()), max_batch=8)
    assert dynamic.inputs[0].shape == (None, 3, 112, 112) and dynamic.max_batch == 8
    info = describe_runner(runner)
    assert info["providers"] == [CPU] and info["io_binding"] is False and info["cuda_graph"] is False
    assert runner_providers(runner) == [CPU]


def test_batch_limit_and_buckets() -> None:
    fixed = TensorSpec("x", (1, 3), np.float32)
    free = TensorSpec("y", (None, 3), np.float32)
    assert batch_limit([free], 16) == 16
    assert batch_limit([free, fixed], 16) == 1
    assert batch_limit([TensorSpec("s", (), np.float32)], 16) == 1
    assert [batch_bucket(n, 16) for n in (1, 2, 3, 5, 9, 16)] == [1, 2, 4, 8, 16, 16]


def test_io_binding_on_cpu_gives_the_plain_results() -> None:
    # "auto" keeps the plain call on a CPU provider; "on" binds pre-allocated CPU buffers.
    sess = session(arcface_model())
    plain, bound = OrtRunner(sess, io_binding="auto"), OrtRunner(sess, io_binding="on")
    assert plain.io_binding is False and bound.io_binding is True and bound.device == "cpu"
    rng = np.random.default_rng(0)
    for n in (1, 3, 1, 2):  # shapes change between calls: one buffer set per input shape
        x = rng.standard_normal((n, 3, 112, 112)).astype(np.float32)
        np.testing.assert_array_equal(bound.run({"input.1": x})[0], plain.run({"input.1": x})[0])


def test_stages_accept_runners_or_sessions() -> None:
    emap = make_emap()
    crop = np.random.default_rng(1).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    via_session = InSwapper(session(inswapper_model("invert", emap=emap)), emap)
    via_runner = InSwapper(OrtRunner(session(inswapper_model("invert", emap=emap)), io_binding="on"), emap)
    latent = via_session.latent(np.ones(512))
    np.testing.assert_array_equal(via_session.swap(crop, latent), via_runner.swap(crop, latent))
    assert as_runner(via_runner.runner) is via_runner.runner


def test_provider_options_for_gpus() -> None:
    available = [TENSORRT, CUDA, CPU]
    opts = RuntimeOptions(providers=(TENSORRT, CUDA), cuda_graph=True, trt_cache_dir=Path("/m/trt"))
    listed = dict(provider_list(opts, available))
    assert list(listed) == [TENSORRT, CUDA, CPU]  # CPU is always the floor
    assert listed[CUDA]["enable_cuda_graph"] == "1"
    trt = listed[TENSORRT]
    assert trt["trt_engine_cache_enable"] == "1" and trt["trt_engine_cache_path"] == "/m/trt"
    assert trt["trt_timing_cache_enable"] == "1" and trt["trt_timing_cache_path"] == "/m/trt"
    plain = dict(provider_list(RuntimeOptions(providers=(CUDA,)), available))
    assert "enable_cuda_graph" not in plain[CUDA]
    # Providers this build lacks are skipped, whatever was asked for.
    assert [p for p, _ in provider_list(opts, [CPU])] == [CPU]
    assert choose_providers([CUDA], [CPU]) == [CPU]


def test_cpu_session_reports_no_cuda_graph(tmp_path: Path) -> None:
    model = tmp_path / "arc.onnx"
    model.write_bytes(arcface_model().SerializeToString())
    # A CUDA graph asked for on a CPU-only build is simply not there (read back, not assumed).
    sess = create_session(model, RuntimeOptions(providers=(CUDA, CPU), cuda_graph=True, quiet=True))
    assert sess.get_providers() == [CPU] and not cuda_graph_in_use(sess)
    assert OrtRunner(sess).io_binding is False


def test_bad_io_binding_mode() -> None:
    with pytest.raises(ValueError):
        OrtRunner(session(arcface_model()), io_binding="maybe")


def test_no_tensorrt_cache_folder_where_tensorrt_is_absent(tmp_path: Path) -> None:
    model = tmp_path / "arc.onnx"
    model.write_bytes(arcface_model().SerializeToString())
    cache = tmp_path / "trt-cache"
    options = RuntimeOptions(providers=(TENSORRT, CPU), trt_cache_dir=cache, quiet=True)
    assert create_session(model, options).get_providers() == [CPU]
    assert not cache.exists()  # this onnxruntime has no TensorRT: nothing written to the models folder
