"""Export a stand-in to ONNX with the real file's tensor names."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from standins import onnx_graph
from standins.specs import StandinSpec

OPSET = 17


def export(model: nn.Module, example: tuple[torch.Tensor, ...], spec: StandinSpec, path: Path) -> None:
    """Write `model` to `path` as ONNX with the spec's names, dynamic axes and (InSwapper) emap."""
    names = [*spec.input_names, *spec.output_names]
    # TorchScript refuses purely numeric value names such as the real files' "683": export those
    # under placeholders and rename them in the ONNX graph afterwards.
    placeholders = {name: f"value_{i}" for i, name in enumerate(names) if name.isdigit()}

    def to_export(name: str) -> str:
        return placeholders.get(name, name)

    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated, but the torch.export one needs onnxscript, which
        # is not installed here; the legacy path still writes the same operators at opset 17.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        # InstanceNorm has no running statistics, so "train=True" is the intended behaviour; the
        # un-folded Slice is InSwapper's style split, which stays a cheap runtime op.
        warnings.filterwarnings("ignore", message=".*instance_norm.*", category=UserWarning)
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1", category=UserWarning)
        torch.onnx.export(
            model,
            example,
            str(path),
            input_names=[to_export(name) for name in spec.input_names],
            output_names=[to_export(name) for name in spec.output_names],
            dynamic_axes={to_export(name): axes for name, axes in spec.dynamic_axes.items()} or None,
            opset_version=OPSET,
            dynamo=False,
        )
    if placeholders:
        onnx_graph.rename_values(path, {v: k for k, v in placeholders.items()})
    if spec.emap:
        rng = np.random.default_rng(0)
        emap = (rng.standard_normal((512, 512)) / np.sqrt(512)).astype(np.float32)
        onnx_graph.append_initializer(path, "emap", emap)
