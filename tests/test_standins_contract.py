"""The ONNX edits the benchmark stand-ins rely on (tools/standins/onnx_graph.py; needs onnx, not torch)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from standins.onnx_graph import append_initializer, last_initializer, rename_values


def write_scale_model(path: Path) -> None:
    """A [1, 4] -> [1, 4] model that doubles its input through one initializer."""
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["y"])],
        "scale",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(np.full((1, 4), 2.0, np.float32), "two")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_appended_emap_is_last_initializer_and_ignored_by_runtime(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    write_scale_model(path)
    emap = np.arange(512 * 512, dtype=np.float32).reshape(512, 512)

    append_initializer(path, "emap", emap)

    name, value = last_initializer(path)
    assert name == "emap"
    np.testing.assert_array_equal(value, emap)
    assert [init.name for init in onnx.load(str(path)).graph.initializer] == ["two", "emap"]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"x": np.ones((1, 4), np.float32)})
    np.testing.assert_array_equal(out, np.full((1, 4), 2.0, np.float32))


def test_appending_a_duplicate_name_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    write_scale_model(path)
    with pytest.raises(ValueError, match="two"):
        append_initializer(path, "two", np.zeros(3, np.float32))


def test_rename_values_gives_numeric_io_names(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    write_scale_model(path)

    rename_values(path, {"x": "input.1", "y": "683"})

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [arg.name for arg in session.get_inputs()] == ["input.1"]
    assert [arg.name for arg in session.get_outputs()] == ["683"]
    (out,) = session.run(["683"], {"input.1": np.full((1, 4), 3.0, np.float32)})
    np.testing.assert_array_equal(out, np.full((1, 4), 6.0, np.float32))
