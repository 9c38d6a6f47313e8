"""Convert MediaPipe's ``face_landmark.tflite`` to ONNX, so one runtime (ONNX Runtime) runs every model.

The face mesh network uses only float32 CONV_2D, DEPTHWISE_CONV_2D, PRELU, ADD, MAX_POOL_2D and PAD,
all of which map onto ONNX operators (PRELU is rewritten exactly into ops ONNX Runtime runs fast,
see below). The converter reads the flatbuffer with the pure
Python ``tflite`` schema package, keeps tensors in NCHW internally and restores the TFLite NHWC
layout at the graph's input and outputs, so the ONNX model takes and returns exactly what the
.tflite does. Anything outside that op set is refused rather than guessed. The output is
deterministic (same bytes for the same .tflite), so its SHA-256 can be pinned.

Faithfulness is checked in tests against ai-edge-litert running the original file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from swaprtc.errors import ModelError

# TFLite enum values (schema.fbs); spelled out so the hot import path does not need `tflite`.
_PADDING_SAME, _PADDING_VALID = 0, 1
_ACT_NONE, _ACT_RELU, _ACT_RELU6 = 0, 1, 3


class ConversionError(ModelError):
    code = "model_conversion_failed"


def _same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow SAME padding: extra pixel goes after (bottom/right)."""
    eff = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + eff - size, 0)
    return total // 2, total - total // 2


def convert_face_landmark(tflite_path: Path | str, onnx_path: Path | str) -> str:
    """Convert ``tflite_path`` to ``onnx_path`` atomically; returns the ONNX file's SHA-256."""
    data = convert_bytes(Path(tflite_path).read_bytes())
    onnx_path = Path(onnx_path)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=onnx_path.parent, prefix=onnx_path.name, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, onnx_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return hashlib.sha256(data).hexdigest()


def convert_bytes(buf: bytes) -> bytes:
    """The ONNX model (serialised) for the TFLite model ``buf``."""
    import onnx
    import tflite
    from onnx import TensorProto, helper, numpy_helper

    model = tflite.Model.GetRootAsModel(buf, 0)
    if model.SubgraphsLength() != 1:
        raise ConversionError("expected a single subgraph")
    graph = model.Subgraphs(0)
    op_names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}

    def tensor(i: int) -> tflite.Tensor:
        return graph.Tensors(i)

    def shape(i: int) -> list[int]:
        return [int(s) for s in tensor(i).ShapeAsNumpy()]

    def name(i: int) -> str:
        return f"t{i}"

    def constant(i: int) -> np.ndarray:
        t = tensor(i)
        if t.Type() != tflite.TensorType.FLOAT32 and t.Type() != tflite.TensorType.INT32:
            raise ConversionError(f"tensor {i} has unsupported type {t.Type()}")
        raw = model.Buffers(t.Buffer()).DataAsNumpy()
        if isinstance(raw, int) or raw.size == 0:
            raise ConversionError(f"tensor {i} is not a constant")
        dtype = np.float32 if t.Type() == tflite.TensorType.FLOAT32 else np.int32
        return np.frombuffer(raw.tobytes(), dtype=dtype).reshape(shape(i)).copy()

    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []

    def init(label: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(value, label))
        return label

    def activation(out: str, act: int, idx: int) -> None:
        """Emit the op's output under `out`, through a fused activation when there is one."""
        if act == _ACT_NONE:
            return
        pre = out + "_pre"
        nodes[-1].output[0] = pre
        if act == _ACT_RELU:
            nodes.append(helper.make_node("Relu", [pre], [out], name=f"op{idx}_relu"))
        elif act == _ACT_RELU6:
            nodes.append(
                helper.make_node(
                    "Clip",
                    [
                        pre,
                        init(f"op{idx}_lo", np.array(0, np.float32)),
                        init(f"op{idx}_hi", np.array(6, np.float32)),
                    ],
                    [out],
                    name=f"op{idx}_relu6",
                )
            )
        else:
            raise ConversionError(f"op {idx}: unsupported fused activation {act}")

    def conv_pads(inp: int, kh: int, kw: int, sh: int, sw: int, padding: int, dh: int, dw: int) -> list[int]:
        if padding == _PADDING_VALID:
            return [0, 0, 0, 0]
        _, h, w, _ = shape(inp)
        top, bottom = _same_pads(h, kh, sh, dh)
        left, right = _same_pads(w, kw, sw, dw)
        return [top, left, bottom, right]

    def conv(depthwise: bool, op: Any, ins: list[int], out: str, idx: int) -> None:
        """CONV_2D (weights O,H,W,I) or DEPTHWISE_CONV_2D (weights 1,H,W,C*M) as one ONNX Conv."""
        opts_table = op.BuiltinOptions()
        o = tflite.DepthwiseConv2DOptions() if depthwise else tflite.Conv2DOptions()
        o.Init(opts_table.Bytes, opts_table.Pos)
        w = constant(ins[1])
        out_channels = w.shape[3] if depthwise else w.shape[0]
        b = constant(ins[2]) if len(ins) > 2 and ins[2] >= 0 else np.zeros(out_channels, np.float32)
        dh, dw = o.DilationHFactor() or 1, o.DilationWFactor() or 1
        pads = conv_pads(ins[0], w.shape[1], w.shape[2], o.StrideH(), o.StrideW(), o.Padding(), dh, dw)
        weights = w.transpose(3, 0, 1, 2) if depthwise else w.transpose(0, 3, 1, 2)
        extra: dict[str, Any] = {"group": shape(ins[0])[3]} if depthwise else {}
        nodes.append(
            helper.make_node(
                "Conv",
                [name(ins[0]), init(f"op{idx}_w", weights.copy()), init(f"op{idx}_b", b)],
                [out],
                name=f"op{idx}_{'dwconv' if depthwise else 'conv'}",
                kernel_shape=[w.shape[1], w.shape[2]],
                strides=[o.StrideH(), o.StrideW()],
                dilations=[dh, dw],
                pads=pads,
                **extra,
            )
        )
        activation(out, o.FusedActivationFunction(), idx)

    g_in = graph.Inputs(0)
    if graph.InputsLength() != 1:
        raise ConversionError("expected one input")
    in_shape = shape(g_in)
    nodes.append(helper.make_node("Transpose", ["input_nhwc"], [name(g_in)], perm=[0, 3, 1, 2]))

    for idx in range(graph.OperatorsLength()):
        op = graph.Operators(idx)
        code = model.OperatorCodes(op.OpcodeIndex())
        kind = op_names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "?")
        ins = [op.Inputs(j) for j in range(op.InputsLength())]
        out = name(op.Outputs(0))
        opts_table = op.BuiltinOptions()
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            conv(kind == "DEPTHWISE_CONV_2D", op, ins, out, idx)
        elif kind == "PRELU":
            alpha = constant(ins[1])
            channels = shape(ins[0])[3]
            if alpha.size != channels:
                raise ConversionError(f"op {idx}: PRELU alpha {alpha.shape} is not per-channel")
            # PRelu(x) = x + (1 - alpha) * Relu(-x), written with 1×1 depthwise convolutions:
            # ONNX Runtime runs those in its blocked (NCHWc) layout with the Relu and the Add fused,
            # where a PRelu node would force layout reorders and a slow broadcast kernel.
            neg = np.full((channels, 1, 1, 1), -1.0, np.float32)
            scale = (1.0 - alpha.reshape(channels)).reshape(channels, 1, 1, 1).astype(np.float32)
            zeros = np.zeros(channels, np.float32)
            nodes.append(
                helper.make_node(
                    "Conv",
                    [name(ins[0]), init(f"op{idx}_neg", neg), init(f"op{idx}_zero", zeros)],
                    [f"op{idx}_negx"],
                    name=f"op{idx}_prelu_neg",
                    kernel_shape=[1, 1],
                    group=channels,
                )
            )
            nodes.append(
                helper.make_node("Relu", [f"op{idx}_negx"], [f"op{idx}_relu"], name=f"op{idx}_prelu_relu")
            )
            nodes.append(
                helper.make_node(
                    "Conv",
                    [f"op{idx}_relu", init(f"op{idx}_scale", scale), f"op{idx}_zero"],
                    [f"op{idx}_neg_part"],
                    name=f"op{idx}_prelu_scale",
                    kernel_shape=[1, 1],
                    group=channels,
                )
            )
            nodes.append(
                helper.make_node("Add", [name(ins[0]), f"op{idx}_neg_part"], [out], name=f"op{idx}_prelu_add")
            )
        elif kind == "ADD":
            o = tflite.AddOptions()
            o.Init(opts_table.Bytes, opts_table.Pos)
            if shape(ins[0]) != shape(ins[1]):
                raise ConversionError(f"op {idx}: broadcasting ADD is not supported")
            nodes.append(helper.make_node("Add", [name(ins[0]), name(ins[1])], [out], name=f"op{idx}_add"))
            activation(out, o.FusedActivationFunction(), idx)
        elif kind == "MAX_POOL_2D":
            o = tflite.Pool2DOptions()
            o.Init(opts_table.Bytes, opts_table.Pos)
            kh, kw = o.FilterHeight(), o.FilterWidth()
            pads = conv_pads(ins[0], kh, kw, o.StrideH(), o.StrideW(), o.Padding(), 1, 1)
            nodes.append(
                helper.make_node(
                    "MaxPool",
                    [name(ins[0])],
                    [out],
                    name=f"op{idx}_maxpool",
                    kernel_shape=[kh, kw],
                    strides=[o.StrideH(), o.StrideW()],
                    pads=pads,
                )
            )
            activation(out, o.FusedActivationFunction(), idx)
        elif kind == "PAD":
            p = constant(ins[1]).astype(np.int64)  # NHWC rows of (before, after)
            nchw = p[[0, 3, 1, 2]]
            pad_values = np.concatenate([nchw[:, 0], nchw[:, 1]])
            nodes.append(
                helper.make_node(
                    "Pad",
                    [name(ins[0]), init(f"op{idx}_pads", pad_values)],
                    [out],
                    name=f"op{idx}_pad",
                    mode="constant",
                )
            )
        else:
            raise ConversionError(f"op {idx}: unsupported TFLite operator {kind}")

    outputs = []
    for j in range(graph.OutputsLength()):
        t = graph.Outputs(j)
        label = tensor(t).Name().decode()
        nodes.append(helper.make_node("Transpose", [name(t)], [label], perm=[0, 2, 3, 1]))
        outputs.append(helper.make_tensor_value_info(label, TensorProto.FLOAT, shape(t)))
    onnx_graph = helper.make_graph(
        nodes,
        "face_landmark",
        [helper.make_tensor_value_info("input_nhwc", TensorProto.FLOAT, in_shape)],
        outputs,
        inits,
    )
    onnx_model = helper.make_model(
        onnx_graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="swaprtc-tflite2onnx"
    )
    onnx_model.ir_version = 8  # readable by every onnxruntime from 1.15 on
    onnx.checker.check_model(onnx_model)
    return onnx_model.SerializeToString()
