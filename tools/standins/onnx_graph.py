"""ONNX file edits that need only the `onnx` package (no torch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper


def append_initializer(path: Path, name: str, array: np.ndarray) -> None:
    """Add `array` as the last graph initializer of the model at `path`, rewriting it in place.

    The real inswapper_128.onnx carries its `emap` matrix this way: an initializer no node reads,
    which callers fetch with `onnx` because ONNX Runtime drops unused initializers.
    """
    model = onnx.load(str(path))
    if any(init.name == name for init in model.graph.initializer):
        raise ValueError(f"{path} already has an initializer named {name!r}")
    model.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
    onnx.save(model, str(path))


def last_initializer(path: Path) -> tuple[str, np.ndarray]:
    """Name and value of the model's last graph initializer (how swaprtc reads `emap`)."""
    model = onnx.load(str(path))
    init = model.graph.initializer[-1]
    return init.name, numpy_helper.to_array(init)


def rename_values(path: Path, names: dict[str, str]) -> None:
    """Rename graph values (inputs, outputs, node edges) of the model at `path`, rewriting it in place.

    Used to give the stand-ins the real files' purely numeric tensor names, which the TorchScript
    exporter refuses.
    """
    model = onnx.load(str(path))
    graph = model.graph
    for value in [*graph.input, *graph.output, *graph.value_info]:
        value.name = names.get(value.name, value.name)
    for node in graph.node:
        node.input[:] = [names.get(name, name) for name in node.input]
        node.output[:] = [names.get(name, name) for name in node.output]
    onnx.save(model, str(path))
