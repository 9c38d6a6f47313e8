"""A dynamic batch axis for models whose ONNX export fixes the batch at 1, kept only when checked.

Many exports declare ``[1, 3, 128, 128]`` although nothing in the graph depends on the 1; others
reshape with a hard-coded 1 and would mix faces up in a batch. So the rewritten model is used only
when a numeric check passes: a batch of two different inputs gives the same outputs as the two
inputs run one at a time. Otherwise the model stays at batch 1 (the scheduler then still queues
fairly, it just calls the model once per face).
"""

from __future__ import annotations

import numpy as np
import onnx

from swaprtc.inference.runner import ModelRunner, TensorSpec

BATCH_DIM = "batch"
# Allowed difference between batched and one-at-a-time outputs, relative to the output's scale:
# kernels may sum in another order for another batch size, nothing more.
BATCH_RTOL = {np.dtype(np.float16): 1e-2}
DEFAULT_RTOL = 1e-4


def _initializers(graph: onnx.GraphProto) -> set[str]:
    return {t.name for t in graph.initializer}


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    skip = _initializers(model.graph)
    return [i for i in model.graph.input if i.name not in skip]


def batch_fixed_at_one(model: onnx.ModelProto) -> bool:
    """Every real input has a first dimension fixed at 1."""
    inputs = graph_inputs(model)
    for value in inputs:
        dims = value.type.tensor_type.shape.dim
        if not dims or dims[0].dim_value != 1:
            return False
    return bool(inputs)


def with_dynamic_batch(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose inputs and outputs have a symbolic first dimension. Intermediate shape hints
    are dropped: they may carry the old fixed 1 and onnxruntime re-infers them anyway."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for value in [*graph_inputs(out), *out.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = BATCH_DIM
    del out.graph.value_info[:]
    return out


def sample_feeds(specs: list[TensorSpec], batch: int, seed: int) -> dict[str, np.ndarray]:
    """Random inputs in [0, 1) of the declared shapes with the batch axis set to ``batch``."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in specs:
        shape = [batch, *[d if d is not None else 1 for d in spec.shape[1:]]]
        feeds[spec.name] = rng.random(shape).astype(spec.dtype)
    return feeds


def batch_matches(runner: ModelRunner) -> tuple[bool, float]:
    """Does a batch of 2 equal two batch-1 runs? Returns (passed, worst relative difference)."""
    a, b = sample_feeds(runner.inputs, 1, seed=1), sample_feeds(runner.inputs, 1, seed=2)
    both = {k: np.concatenate([a[k], b[k]]) for k in a}
    try:
        batched = runner.run(both)
        singles = [runner.run(a), runner.run(b)]
    except Exception:  # a graph that cannot take the batch (a reshape to 1, ...) fails to run
        return False, float("inf")
    worst = 0.0
    for i, out in enumerate(batched):
        ref = np.concatenate([np.asarray(s[i]) for s in singles]).astype(np.float64)
        got = np.asarray(out).astype(np.float64)
        if got.shape != ref.shape:
            return False, float("inf")
        scale = max(1.0, float(np.abs(ref).max()))
        rel = float(np.abs(got - ref).max()) / scale
        worst = max(worst, rel)
        if not rel <= BATCH_RTOL.get(np.asarray(out).dtype, DEFAULT_RTOL):
            return False, worst
    return True, worst
