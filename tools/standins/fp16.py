"""The fp16 InSwapper stand-in: the fp32 stand-in converted to half precision (no torch needed).

The real ``inswapper_128_fp16.onnx`` is such a conversion of ``inswapper_128.onnx``; with this file
next to the fp32 stand-in, ``swaprtc bench --suite gpu`` exercises the fp16 choice (GPU provider
in use + the load-time comparison with fp32). Needs ``pip install onnxconverter-common``.
"""

from __future__ import annotations

from pathlib import Path

FP16_MISSING = (
    "converting to fp16 needs onnxconverter-common, which is not a project dependency.\n"
    "Install it into this environment with:  pip install onnxconverter-common"
)


def write_fp16(src: Path, dst: Path) -> None:
    import onnx
    from onnxconverter_common import float16

    model = onnx.load(str(src))
    # Inputs and outputs stay float32 (casts inside the graph), as the fp32 model's callers expect.
    half = float16.convert_float_to_float16(model, keep_io_types=True)
    onnx.save(half, str(dst))
