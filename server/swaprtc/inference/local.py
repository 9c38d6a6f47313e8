"""``OrtRunner``: a ModelRunner on a local ONNX Runtime session, with optional IO binding.

IO binding keeps one set of pre-allocated input and output buffers per input shape, on the device
the session really runs on (CUDA memory when the CUDA or TensorRT provider is in use), so a call
copies its inputs in once and its outputs out once and onnxruntime allocates nothing. A session
with a CUDA graph must be called through such fixed buffers (the graph replays fixed addresses), so
batches there are padded to a few bucket sizes, each with its own captured graph.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np
import onnxruntime as ort

from swaprtc.inference.runner import ModelRunner, TensorSpec
from swaprtc.inference.sessions import cuda_device_in_use, cuda_graph_in_use

_TYPES: dict[str, type[np.generic]] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(uint8)": np.uint8,
}
IO_BINDING_MODES = ("auto", "on", "off")
DEFAULT_MAX_BATCH = 32
MAX_SHAPES = 8  # pre-allocated buffer sets kept per runner (one per distinct input shape)


def tensor_spec(arg: ort.NodeArg) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) and d > 0 else None for d in arg.shape)
    return TensorSpec(arg.name, shape, _TYPES.get(arg.type, np.float32))


def batch_limit(inputs: list[TensorSpec], requested: int) -> int:
    """1 when any input fixes its first axis at 1 (or has no axis); ``requested`` otherwise."""
    for spec in inputs:
        if not spec.shape or spec.shape[0] is not None:
            return 1
    return max(1, requested)


def batch_bucket(n: int, limit: int) -> int:
    """The power of two a batch of ``n`` is padded to under a CUDA graph (one graph per bucket)."""
    size = 1
    while size < n:
        size *= 2
    return min(size, max(limit, n))


class _Buffers:
    """Input and output OrtValues for one input-shape signature, bound once."""

    def __init__(
        self,
        session: ort.InferenceSession,
        device: str,
        device_id: int,
        inputs: list[tuple[TensorSpec, tuple[int, ...]]],
        outputs: list[TensorSpec],
        batch: int,
    ) -> None:
        self.binding = session.io_binding()
        self.inputs: dict[str, ort.OrtValue] = {}
        for spec, shape in inputs:
            value = ort.OrtValue.ortvalue_from_shape_and_type(list(shape), spec.dtype, device, device_id)
            self.inputs[spec.name] = value
            self.binding.bind_ortvalue_input(spec.name, value)
        for spec in outputs:
            dims: list[int | None] = list(spec.shape)
            if dims and dims[0] is None:
                dims[0] = batch
            fixed = [d for d in dims if d is not None]
            if len(fixed) == len(dims):
                out = ort.OrtValue.ortvalue_from_shape_and_type(fixed, spec.dtype, device, device_id)
                self.binding.bind_ortvalue_output(spec.name, out)
            else:  # a shape only the model knows (detector heads): onnxruntime allocates on the device
                self.binding.bind_output(spec.name, device, device_id)

    def run(
        self, session: ort.InferenceSession, feeds: dict[str, np.ndarray], options: Any
    ) -> list[np.ndarray]:
        for name, value in self.inputs.items():
            value.update_inplace(np.ascontiguousarray(feeds[name]))
        session.run_with_iobinding(self.binding, options)
        return list(self.binding.copy_outputs_to_cpu())


class OrtRunner:
    """A ModelRunner over one ``ort.InferenceSession``. Thread-safe (bound calls take a lock: the
    buffers are shared; plain calls run concurrently, as onnxruntime allows)."""

    def __init__(
        self,
        session: ort.InferenceSession,
        *,
        io_binding: str = "auto",
        max_batch: int = DEFAULT_MAX_BATCH,
        label: str = "",
        notes: dict[str, object] | None = None,
    ) -> None:
        if io_binding not in IO_BINDING_MODES:
            raise ValueError(f"io_binding must be one of {IO_BINDING_MODES}, got {io_binding!r}")
        self.session = session
        self.label = label
        self.inputs: list[TensorSpec] = [tensor_spec(i) for i in session.get_inputs()]
        self.outputs: list[TensorSpec] = [tensor_spec(o) for o in session.get_outputs()]
        self.max_batch = batch_limit(self.inputs, max_batch)
        self.providers = list(session.get_providers())
        self.cuda_graph = cuda_graph_in_use(session)
        self.device = "cuda" if cuda_device_in_use(session) else "cpu"
        # On a CPU provider, binding buys nothing (the arrays already live in host memory), so
        # "auto" keeps the plain call there; "on" forces it (tests, or to compare in the benchmark).
        self.io_binding = (
            self.cuda_graph or io_binding == "on" or (io_binding == "auto" and self.device == "cuda")
        )
        self.notes = dict(notes or {})
        self._device_id = int(
            session.get_provider_options().get(self.providers[0], {}).get("device_id", 0) or 0
        )
        self._buffers: OrderedDict[tuple[tuple[int, ...], ...], tuple[_Buffers, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._names = [o.name for o in self.outputs]

    def describe(self) -> dict[str, object]:
        return {
            "runner": "onnxruntime",
            "providers": list(self.providers),
            "device": self.device,
            "io_binding": self.io_binding,
            "cuda_graph": self.cuda_graph,
            "max_batch": self.max_batch,
            "inputs": {s.name: [s.shape, np.dtype(s.dtype).name] for s in self.inputs},
            **self.notes,
        }

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        if not self.io_binding:
            return list(self.session.run(self._names, feeds))
        n = int(next(iter(feeds.values())).shape[0]) if feeds else 1
        padded = batch_bucket(n, self.max_batch) if self.cuda_graph and self.max_batch > 1 else n
        if padded != n:
            feeds = {k: _pad(v, padded) for k, v in feeds.items()}
        with self._lock:
            buffers, options = self._bound(feeds, padded)
            outs = buffers.run(self.session, feeds, options)
        return [o[:n] if padded != n and o.ndim and o.shape[0] == padded else o for o in outs]

    def _bound(self, feeds: dict[str, np.ndarray], batch: int) -> tuple[_Buffers, Any]:
        key = tuple(tuple(feeds[s.name].shape) for s in self.inputs)
        found = self._buffers.get(key)
        if found is not None:
            self._buffers.move_to_end(key)
            return found
        options = ort.RunOptions()
        if self.cuda_graph:
            # One captured graph per input shape; ids must stay stable for the session's lifetime.
            options.add_run_config_entry("gpu_graph_id", str(len(self._buffers)))
        shapes = [(s, key[i]) for i, s in enumerate(self.inputs)]
        buffers = _Buffers(self.session, self.device, self._device_id, shapes, self.outputs, batch)
        entry = (buffers, options)
        if len(self._buffers) >= MAX_SHAPES and not self.cuda_graph:
            self._buffers.popitem(last=False)
        self._buffers[key] = entry
        return entry


def _pad(array: np.ndarray, size: int) -> np.ndarray:
    pad = np.zeros((size - array.shape[0], *array.shape[1:]), dtype=array.dtype)
    return np.concatenate([array, pad])


def as_runner(model: ModelRunner | ort.InferenceSession) -> ModelRunner:
    """Stages accept a runner, or a bare session (wrapped in a plain OrtRunner) for convenience."""
    if isinstance(model, ort.InferenceSession):
        return OrtRunner(model)
    return model
