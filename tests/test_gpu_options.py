"""GPU options chosen at load time, on a CPU-only machine: fp16 only where a GPU provider really
runs AND the fp16 model matches fp32 on a fixed crop; a clean CPU fallback when CUDA is asked for
but not in use; the choices reported by /api/info through a real HTTP server."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import numpy as np
import onnx
import pytest
from swaprtc.inference import loader
from swaprtc.inference.precision import FP16_MAX_ABS, check_crop, compare_fp16, fp16_wanted
from swaprtc.models.store import ModelStore
from swaprtc.pipeline.neural import NeuralEngine
from swaprtc.rtc.app import POOL, create_app
from swaprtc.settings import Settings, SettingsError

from tests.rtc_client import serve_in_process
from tests.tiny_models import TinyStore, arcface_model, inswapper_model, make_emap, session

EMAP = make_emap(seed=5)


def tiny_store(tmp_path: Path, model_store: ModelStore, fp16: onnx.ModelProto | None) -> TinyStore:
    models = {"w600k_r50": arcface_model(), "inswapper_128": inswapper_model("invert", emap=EMAP)}
    if fp16 is not None:
        models["inswapper_128_fp16"] = fp16
    real = {n: model_store.ensure(n) for n in ("retinaface_mnet025", "face_landmark")}
    return TinyStore(tmp_path, models, real)


GOOD_FP16 = inswapper_model("invert", emap=EMAP, fp16_io=True)
BAD_FP16 = inswapper_model("colour", emap=EMAP)  # runs, but paints something else


def test_fp16_wanted_rules() -> None:
    assert fp16_wanted("auto", gpu_in_use=True, fp16_available=True)[0]
    no_gpu, why = fp16_wanted("auto", gpu_in_use=False, fp16_available=True)
    assert not no_gpu and "no GPU provider in use" in why
    assert not fp16_wanted("auto", gpu_in_use=True, fp16_available=False)[0]
    assert not fp16_wanted("off", gpu_in_use=True, fp16_available=True)[0]
    assert fp16_wanted("on", gpu_in_use=False, fp16_available=True)[0]
    with pytest.raises(ValueError):
        fp16_wanted("sometimes", True, True)


def test_fp16_check_bounds_the_difference() -> None:
    fp32 = loader.OrtRunner(session(inswapper_model("invert", emap=EMAP)))
    good = compare_fp16(fp32, loader.OrtRunner(session(GOOD_FP16)), _feeds())
    assert good.passed and good.max_abs <= FP16_MAX_ABS
    bad = compare_fp16(fp32, loader.OrtRunner(session(BAD_FP16)), _feeds())
    assert not bad.passed and bad.max_abs > FP16_MAX_ABS


def _feeds() -> dict[str, np.ndarray]:
    crop = check_crop(128)[..., ::-1].astype(np.float32).transpose(2, 0, 1)[None] / 255.0
    return {"target": crop, "source": np.full((1, 512), 0.04, np.float32)}


def test_cpu_fallback_when_cuda_is_asked_but_not_in_use(tmp_path: Path, model_store: ModelStore) -> None:
    store = tiny_store(tmp_path, model_store, GOOD_FP16)
    settings = Settings(providers=("CUDA", "CPU"), models_dir=tmp_path)
    engine = NeuralEngine.from_runners(loader.local_neural_runners(store, settings))  # type: ignore[arg-type]
    swap = engine.decisions["swapper"]
    assert isinstance(swap, dict)
    assert swap["fp16"] is False and "no GPU provider in use" in str(swap["fp16_reason"])
    runners = engine.describe()["runners"]
    assert isinstance(runners, dict)
    for stage in ("detector", "embedder", "swapper"):
        info = runners[stage]
        assert info["providers"] == ["CPUExecutionProvider"] and info["device"] == "cpu"
        assert info["io_binding"] is False and info["cuda_graph"] is False


@pytest.mark.parametrize(("fp16_model", "chosen"), [(GOOD_FP16, True), (BAD_FP16, False)])
def test_fp16_on_a_gpu_only_when_the_check_passes(
    tmp_path: Path,
    model_store: ModelStore,
    monkeypatch: pytest.MonkeyPatch,
    fp16_model: onnx.ModelProto,
    chosen: bool,
) -> None:
    # As if the session's read-back providers said CUDA: the numeric check still decides.
    monkeypatch.setattr(loader, "gpu_in_use", lambda session: True)
    store = tiny_store(tmp_path, model_store, fp16_model)
    runners = loader.local_neural_runners(store, Settings(fp16="auto"))  # type: ignore[arg-type]
    swap = runners.decisions["swapper"]
    assert isinstance(swap, dict)
    assert swap["fp16"] is chosen and swap["fp16_check"]["passed"] is chosen
    assert runners.models["swapper"] == ("inswapper_128_fp16" if chosen else "inswapper_128")
    # fp16 chosen: the fp16 model runs, with its float16 inputs.
    assert (runners.swapper.inputs[0].dtype == np.float16) is chosen


def test_batch_axis_decision_is_recorded(tmp_path: Path, model_store: ModelStore) -> None:
    store = tiny_store(tmp_path, model_store, None)
    runners = loader.local_neural_runners(store, Settings(max_batch=8))  # type: ignore[arg-type]
    assert runners.swapper.max_batch == 8  # the invert stand-in passes the batch check
    assert "check passed" in str(runners.decisions["swapper"])
    assert runners.embedder.max_batch == 8  # ArcFace declares a dynamic batch itself
    single = loader.local_neural_runners(store, Settings(max_batch=1))  # type: ignore[arg-type]
    assert single.swapper.max_batch == 1


def test_settings_from_env_and_flags() -> None:
    env = {
        "SWAPRTC_IO_BINDING": "on",
        "SWAPRTC_CUDA_GRAPH": "false",
        "SWAPRTC_FP16": "off",
        "SWAPRTC_TRT_CACHE": "0",
        "SWAPRTC_BATCH_WINDOW_MS": "3.5",
        "SWAPRTC_MAX_BATCH": "32",
    }
    s = Settings.from_env(env)
    assert (s.io_binding, s.cuda_graph, s.fp16, s.trt_cache, s.batch_window_ms, s.max_batch) == (
        "on",
        False,
        "off",
        False,
        3.5,
        32,
    )
    from swaprtc.cli import build_parser

    args = build_parser().parse_args(["serve", "--fp16", "on", "--batch-window-ms", "0", "--no-cuda-graph"])
    flagged = Settings.from_env({}).with_args(args)
    assert flagged.fp16 == "on" and flagged.batch_window_ms == 0 and flagged.cuda_graph is False
    with pytest.raises(SettingsError):
        Settings(fp16="maybe")
    with pytest.raises(SettingsError):
        Settings(batch_window_ms=-1)


async def test_api_info_reports_the_gpu_choices(tmp_path: Path, model_store: ModelStore) -> None:
    store = tiny_store(tmp_path, model_store, GOOD_FP16)
    settings = Settings(batch_window_ms=2.0)
    engine = NeuralEngine.from_store(store, settings)  # type: ignore[arg-type]
    app = create_app(settings, engine)
    # Batching needs a thread per session, or frames of two sessions never meet in one batch.
    assert app[POOL].threads == settings.max_sessions
    try:
        async with serve_in_process(app) as base, aiohttp.ClientSession() as http:
            resp = await http.get(base + "/api/info")
            info = (await resp.json())["engine"]
    finally:
        assert engine.batching is not None
        engine.batching.close()
    assert info["engine"] == "neural" and info["batching"] is True and info["detect_every"] == 5
    assert info["gpu"]["settings"]["fp16"] == "auto" and info["gpu"]["swapper"]["fp16"] is False
    assert info["runners"]["swapper"]["batching"]["window_ms"] == 2.0
    assert info["runners"]["swapper"]["io_binding"] is False
