"""Tiny ONNX models with the real I/O contracts of the neural models (names, shapes, layouts), so the
real pre- and post-processing runs against them in tests. Built with ``onnx.helper``; no weights
from anywhere. Each builder returns an ``onnx.ModelProto``; ``session`` turns one into an ORT session.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OPSET = [helper.make_opsetid("", 17)]


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=OPSET, producer_name="swaprtc-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3  # the stand-ins keep an unused emap on purpose; no warning spam
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _init(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array), name)


def arcface_model(seed: int = 0, dim: int = 512) -> onnx.ModelProto:
    """w600k_r50 contract: ``input.1`` [N,3,112,112] → ``683`` [N,512]. A fixed random projection of
    an 8×8 average-pooled crop, so different faces give different embeddings."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((3 * 8 * 8, dim)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("AveragePool", ["input.1"], ["pooled"], kernel_shape=[14, 14], strides=[14, 14]),
            helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "W"], ["683"]),
        ],
        "arcface_tiny",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["N", 3, 112, 112])],
        [helper.make_tensor_value_info("683", TensorProto.FLOAT, ["N", dim])],
        initializer=[_init("W", w)],
    )
    return _model(graph)


def make_emap(seed: int = 1, dim: int = 512) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((dim, dim)) / np.sqrt(dim)).astype(np.float32)


def inswapper_model(
    effect: str = "invert",
    emap: np.ndarray | None = None,
    colour_seed: int = 2,
    emap_dtype: str = "float32",
    fp16_io: bool = False,
) -> onnx.ModelProto:
    """InSwapper contract: ``target`` [1,3,128,128] RGB/255 and ``source`` [1,512] → ``output``
    [1,3,128,128] RGB in [0,1]; an ``emap`` [512,512] initializer is the LAST one and unused.

    Effects:
    - ``invert``: output = 1 - target (the latent is used, times zero, so the input stays live).
    - ``colour``: output = 0.5 + 0.5 · (source @ C) as a flat RGB colour, C = ``colour_matrix()``;
      values may leave [0, 1], which the swapper must clip.

    ``fp16_io`` (invert only) types every tensor float16, like an fp16 export without kept I/O types.
    """
    emap = make_emap() if emap is None else emap
    ftype = np.float16 if fp16_io else np.float32
    elem = TensorProto.FLOAT16 if fp16_io else TensorProto.FLOAT
    zero = np.zeros((), dtype=ftype)
    nodes = [
        helper.make_node("ReduceMean", ["source"], ["src_mean"], keepdims=0),
        helper.make_node("Mul", ["src_mean", "zero"], ["src_zero"]),
    ]
    inits = [_init("zero", zero)]
    if effect == "invert":
        nodes += [
            helper.make_node("Sub", ["one", "target"], ["inv"]),
            helper.make_node("Add", ["inv", "src_zero"], ["output"]),
        ]
        inits.append(_init("one", np.ones((), dtype=ftype)))
    elif effect == "colour" and not fp16_io:
        nodes += [
            helper.make_node("MatMul", ["source", "C"], ["rgb"]),
            helper.make_node("Mul", ["rgb", "half"], ["rgb_h"]),
            helper.make_node("Add", ["rgb_h", "half"], ["rgb_c"]),
            helper.make_node("Reshape", ["rgb_c", "shape"], ["rgb4"]),
            helper.make_node("Mul", ["target", "zero"], ["blank"]),
            helper.make_node("Add", ["blank", "rgb4"], ["output"]),
        ]
        inits += [
            _init("C", colour_matrix(colour_seed)),
            _init("half", np.array(0.5, dtype=np.float32)),
            _init("shape", np.array([1, 3, 1, 1], dtype=np.int64)),
        ]
    else:
        raise ValueError(effect)
    inits.append(_init("emap", emap.astype(emap_dtype)))  # last, as in the real file
    graph = helper.make_graph(
        nodes,
        "inswapper_tiny",
        [
            helper.make_tensor_value_info("target", elem, [1, 3, 128, 128]),
            helper.make_tensor_value_info("source", elem, [1, 512]),
        ],
        [helper.make_tensor_value_info("output", elem, [1, 3, 128, 128])],
        initializer=inits,
    )
    return _model(graph)


def colour_matrix(seed: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((512, 3)).astype(np.float32)


def gfpgan_model() -> onnx.ModelProto:
    """GFPGAN contract: ``input`` [1,3,512,512] in [-1,1] → ``output`` [1,3,512,512] in [-1,1].
    The stand-in negates its input, which in pixels is 255 - x."""
    graph = helper.make_graph(
        [helper.make_node("Neg", ["input"], ["output"])],
        "gfpgan_tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 512, 512])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 512, 512])],
    )
    return _model(graph)


SCRFD_OUTPUTS = ("448", "471", "494", "451", "474", "497", "454", "477", "500")


def scrfd_model(
    outputs: list[np.ndarray], size: int = 640, order: list[int] | None = None
) -> onnx.ModelProto:
    """SCRFD-10G contract: ``input.1`` [1,3,size,size] → 9 outputs without a batch dimension
    (scores [N,1], boxes [N,4], kps [N,10] for strides 8/16/32). Outputs are the given constants
    (plus 0 × mean(input), so the input stays live). ``order`` lists the graph's outputs by their
    index in ``outputs``, as another export might order them; the default is the real file's."""
    assert len(outputs) == 9
    nodes = [
        helper.make_node("ReduceMean", ["input.1"], ["m"], keepdims=0),
        helper.make_node("Mul", ["m", "zero"], ["z"]),
    ]
    inits = [_init("zero", np.zeros((), dtype=np.float32))]
    infos = []
    for name, value in zip(SCRFD_OUTPUTS, outputs, strict=True):
        inits.append(_init(f"c{name}", value.astype(np.float32)))
        nodes.append(helper.make_node("Add", [f"c{name}", "z"], [name]))
        infos.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(value.shape)))
    graph = helper.make_graph(
        nodes,
        "scrfd_tiny",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, size, size])],
        [infos[i] for i in (order or range(9))],
        initializer=inits,
    )
    return _model(graph)


def scrfd_zero_outputs(size: int = 640) -> list[np.ndarray]:
    """All-zero SCRFD outputs (no detections) with the real shapes for ``size``."""
    counts = [(size // s) ** 2 * 2 for s in (8, 16, 32)]
    return (
        [np.zeros((n, 1), np.float32) for n in counts]
        + [np.zeros((n, 4), np.float32) for n in counts]
        + [np.zeros((n, 10), np.float32) for n in counts]
    )


class TinyStore:
    """The slice of ModelStore the neural loader uses: tiny models written to ``folder``, plus
    ``real`` files (the embedded models, from the test model cache) by name."""

    def __init__(self, folder: Path, models: dict[str, onnx.ModelProto], real: dict[str, Path]) -> None:
        self.models_dir = folder
        self.files = dict(real)
        for name, model in models.items():
            self.files[name] = folder / f"{name}.onnx"
            self.files[name].write_bytes(model.SerializeToString())

    def available(self, name: str) -> bool:
        return name in self.files

    def path(self, name: str) -> Path:
        return self.files[name]

    ensure = path


def scrfd_with_face(cell: tuple[int, int], anchor: int, score: float) -> tuple[list[np.ndarray], int]:
    """SCRFD outputs with one face at ``cell`` of the stride-8 grid (``anchor`` 0 or 1); and its row."""
    outs = scrfd_zero_outputs()
    x, y = cell
    idx = (y * 80 + x) * 2 + anchor  # stride 8: 80 cells a row, two anchors a cell
    outs[0][idx, 0] = score
    outs[3][idx] = [2, 3, 4, 5]  # left, top, right, bottom distances in stride units
    outs[6][idx] = [-1, -1, 1, -1, 0, 0, -1, 1, 1, 1]  # keypoint offsets in stride units
    return outs, idx
