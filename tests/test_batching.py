"""Cross-session batching: the scheduler forms batches from concurrent streams, gives the same
pixels as unbatched calls, keeps a flooding stream from starving another, drops requests whose
caller gave up, and a model fixed at batch 1 gets a batch axis only when the numeric check passes."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from swaprtc.inference.batch_axis import batch_fixed_at_one, batch_matches, with_dynamic_batch
from swaprtc.inference.local import OrtRunner
from swaprtc.inference.runner import TensorSpec
from swaprtc.inference.scheduler import BatchScheduler, InferenceTimeout
from swaprtc.pipeline.detector import RetinaFaceDetector
from swaprtc.pipeline.embedder import ArcFaceEmbedder
from swaprtc.pipeline.neural import Batching, NeuralEngine
from swaprtc.pipeline.swapper import InSwapper
from swaprtc.types import SourceFace, SwapOptions

from tests.tiny_models import arcface_model, inswapper_model, make_emap, session


def dynamic(model: onnx.ModelProto) -> OrtRunner:
    return OrtRunner(session(with_dynamic_batch(model)), max_batch=16)


class SlowRunner:
    """A ModelRunner that records which requests each call served and takes ``delay_s`` per call."""

    def __init__(self, max_batch: int, delay_s: float = 0.0) -> None:
        self.inputs = [TensorSpec("x", (None, 2), np.float32)]
        self.outputs = [TensorSpec("y", (None, 2), np.float32)]
        self.max_batch = max_batch
        self.delay_s = delay_s
        self.calls: list[list[float]] = []
        self.lock = threading.Lock()
        self.gate = threading.Event()  # calls wait here until the test opens it
        self.gate.set()

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.gate.wait(timeout=10)
        time.sleep(self.delay_s)
        with self.lock:
            self.calls.append([float(v) for v in feeds["x"][:, 0]])
        return [feeds["x"] * 2]


def request(tag: float) -> dict[str, np.ndarray]:
    return {"x": np.array([[tag, tag]], np.float32)}


# --- the dynamic batch axis -------------------------------------------------------------------
def test_fixed_batch_model_gets_a_checked_batch_axis() -> None:
    model = inswapper_model("invert")
    assert batch_fixed_at_one(model)
    runner = dynamic(model)
    assert runner.inputs[0].shape == (None, 3, 128, 128) and runner.max_batch == 16
    passed, worst = batch_matches(runner)
    assert passed and worst <= 1e-6


def test_a_reshape_to_one_fails_the_check() -> None:
    # The "colour" stand-in reshapes to [1, 3, 1, 1]: a batch of 2 cannot run.
    passed, _ = batch_matches(dynamic(inswapper_model("colour")))
    assert not passed


def mixing_model() -> onnx.ModelProto:
    """Runs with any batch, but a batch mixes its rows: y = x - mean over the batch + x."""
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["x"], ["m"], axes=[0], keepdims=1),
            helper.make_node("Sub", ["x", "m"], ["d"]),
            helper.make_node("Add", ["d", "x"], ["y"]),
        ],
        "mixing",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_a_model_that_mixes_rows_fails_the_check() -> None:
    passed, worst = batch_matches(dynamic(mixing_model()))
    assert not passed and worst > 0.01


# --- the scheduler ----------------------------------------------------------------------------
def test_concurrent_streams_form_batches_with_equal_results() -> None:
    emap = make_emap()
    plain = InSwapper(session(inswapper_model("invert", emap=emap)), emap)
    scheduler = BatchScheduler(dynamic(inswapper_model("invert", emap=emap)), window_ms=200, max_batch=8)
    rng = np.random.default_rng(3)
    crops = [rng.integers(0, 256, (128, 128, 3), dtype=np.uint8) for _ in range(8)]
    latent = plain.latent(np.ones(512))
    views = [InSwapper(scheduler.client(key=i), emap) for i in range(8)]
    try:
        with ThreadPoolExecutor(8) as pool:
            got = list(pool.map(lambda i: views[i].swap(crops[i], latent), range(8)))
    finally:
        scheduler.close()
    for crop, out in zip(crops, got, strict=True):
        np.testing.assert_array_equal(out, plain.swap(crop, latent))
    stats = scheduler.describe()["batching"]
    assert isinstance(stats, dict)
    assert stats["rows"] == 8 and stats["largest_batch"] > 1 and stats["calls"] < 8


def test_a_flooding_stream_cannot_starve_another() -> None:
    runner = SlowRunner(max_batch=1, delay_s=0.01)
    scheduler = BatchScheduler(runner, window_ms=0)
    flood = [scheduler.submit(request(1.0), key="flood") for _ in range(30)]
    time.sleep(0.03)  # the flood is already being served, with most of it still queued
    polite = scheduler.submit(request(2.0), key="polite")
    polite.result(timeout=5)
    for f in flood:
        f.result(timeout=5)
    scheduler.close()
    order = [c[0] for c in runner.calls]
    # Round robin: the polite request runs within one turn of arriving, not after the 30.
    assert order.index(2.0) <= 6, order


def test_batches_are_shared_fairly() -> None:
    runner = SlowRunner(max_batch=4)
    runner.gate.clear()
    scheduler = BatchScheduler(runner, window_ms=5)
    futures = [scheduler.submit(request(0.0), key="warm")]
    time.sleep(0.05)  # the scheduler is now inside the model call, waiting at the gate
    futures += [scheduler.submit(request(1.0), key="a") for _ in range(12)]
    futures += [scheduler.submit(request(2.0), key="b") for _ in range(2)]
    runner.gate.set()
    for f in futures:
        f.result(timeout=5)
    scheduler.close()
    # Stream b's two requests go in the first batch after the gate, not after a's twelve.
    assert runner.calls[0] == [0.0]
    assert runner.calls[1].count(2.0) == 2, runner.calls
    assert max(len(c) for c in runner.calls) <= 4


def test_requests_past_their_deadline_are_dropped() -> None:
    runner = SlowRunner(max_batch=1, delay_s=0.05)
    scheduler = BatchScheduler(runner, window_ms=0)
    busy = scheduler.submit(request(1.0), key="a")
    client = scheduler.client(key="b", timeout_s=0.01)
    with pytest.raises(InferenceTimeout):
        client.run(request(2.0))
    busy.result(timeout=5)
    time.sleep(0.1)
    scheduler.close()
    assert 2.0 not in [v for c in runner.calls for v in c]  # never reached the model
    assert scheduler.stats.expired == 1


def test_model_errors_reach_every_caller() -> None:
    class Broken(SlowRunner):
        def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
            raise RuntimeError("boom")

    scheduler = BatchScheduler(Broken(max_batch=4), window_ms=20)
    futures = [scheduler.submit(request(1.0), key=i) for i in range(3)]
    for f in futures:
        with pytest.raises(RuntimeError, match="boom"):
            f.result(timeout=5)
    scheduler.close()


# --- through the neural engine ----------------------------------------------------------------
def test_streams_of_the_engine_share_batches(
    retinaface_session: ort.InferenceSession, grace_bgr: np.ndarray, astronaut_bgr: np.ndarray
) -> None:
    emap = make_emap()
    swap_runner = dynamic(inswapper_model("invert", emap=emap))
    embed_runner = OrtRunner(session(arcface_model()), max_batch=16)
    schedulers = {
        "swapper": BatchScheduler(swap_runner, window_ms=2000, max_batch=4, name="swapper"),
        "embedder": BatchScheduler(embed_runner, window_ms=2000, max_batch=4, name="embedder"),
    }
    detector = RetinaFaceDetector(retinaface_session)
    batched = NeuralEngine(
        detector,
        ArcFaceEmbedder(embed_runner),
        InSwapper(swap_runner, emap),
        batching=Batching(schedulers, timeout_s=10.0),
    )
    unbatched = NeuralEngine(detector, ArcFaceEmbedder(embed_runner), InSwapper(swap_runner, emap))
    source: SourceFace = batched.prepare_source(astronaut_bgr)
    streams = [batched.open_stream() for _ in range(4)]
    options = SwapOptions(strength=0.7)  # also embeds the target face: the embedder is batched too
    barrier = threading.Barrier(4)

    def one(i: int) -> np.ndarray:
        barrier.wait()
        return streams[i].process(grace_bgr, source, options).frame

    try:
        with ThreadPoolExecutor(4) as pool:
            frames = list(pool.map(one, range(4)))
    finally:
        batched.batching.close() if batched.batching else None
    expected = unbatched.open_stream().process(grace_bgr, source, options).frame
    for frame in frames:
        np.testing.assert_array_equal(frame, expected)
    info = batched.describe()
    runners = info["runners"]
    assert isinstance(runners, dict)
    assert runners["swapper"]["batching"]["largest_batch"] > 1
    assert runners["embedder"]["batching"]["largest_batch"] > 1
    assert info["batching"] is True


def test_a_swap_past_the_deadline_hides_the_face(
    retinaface_session: ort.InferenceSession, grace_bgr: np.ndarray, astronaut_bgr: np.ndarray
) -> None:
    emap = make_emap()
    swap = SlowSwap(OrtRunner(session(inswapper_model("invert", emap=emap))), delay_s=0.3)
    engine = NeuralEngine(
        RetinaFaceDetector(retinaface_session),
        ArcFaceEmbedder(session(arcface_model())),
        InSwapper(swap, emap),
        batching=Batching({"swapper": BatchScheduler(swap, window_ms=0)}, timeout_s=0.05),
    )
    source = engine.prepare_source(astronaut_bgr)
    result = engine.open_stream().process(grace_bgr, source, SwapOptions())
    assert result.swapped == 0 and len(result.unswapped) == 1  # the caller hides it: never leaked
    assert np.array_equal(result.frame, grace_bgr)
    assert engine.batching is not None
    engine.batching.close()


class SlowSwap:
    def __init__(self, runner: OrtRunner, delay_s: float) -> None:
        self.runner = runner
        self.inputs, self.outputs, self.max_batch = runner.inputs, runner.outputs, runner.max_batch
        self.delay_s = delay_s

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        time.sleep(self.delay_s)
        return self.runner.run(feeds)
