"""Small onnxruntime helpers: read a session's I/O contract instead of hard-coding it, and which
execution providers count as a GPU."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

# Providers that run on an accelerator: engine selection (auto picks neural only with one) and the
# fp16 InSwapper choice (faster there, slower on a CPU) both ask this one list.
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CoreMLExecutionProvider")

_TYPES: dict[str, type[np.floating]] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
}


def numpy_dtype(arg: ort.NodeArg) -> type[np.floating]:
    """The numpy dtype a model input expects (fp16 models may keep fp32 I/O, or not)."""
    return _TYPES.get(arg.type, np.float32)


def input_size(arg: ort.NodeArg, default: int) -> int:
    """Spatial size of an NCHW input; ``default`` when the model leaves it dynamic."""
    shape = arg.shape
    if len(shape) == 4 and isinstance(shape[2], int) and shape[2] > 0:
        return int(shape[2])
    return default
