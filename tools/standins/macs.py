"""Parameter and multiply-accumulate counting with forward hooks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn


def conv_macs(module: nn.Conv2d | nn.ConvTranspose2d, inputs: torch.Tensor, output: torch.Tensor) -> int:
    """MACs of one convolution: one kernel window per output element (transposed: per input element)."""
    kernel = module.kernel_size[0] * module.kernel_size[1]
    if isinstance(module, nn.ConvTranspose2d):
        # Each input element is scattered through the full kernel into every output channel.
        return inputs.numel() * kernel * module.out_channels // module.groups
    return output.numel() * kernel * module.in_channels // module.groups


def linear_macs(module: nn.Linear, inputs: torch.Tensor, output: torch.Tensor) -> int:
    return output.numel() * module.in_features


def count_macs(model: nn.Module, example: tuple[torch.Tensor, ...]) -> int:
    """MACs of one forward pass over `example`, counting Conv2d, ConvTranspose2d and Linear layers.

    A module that computes its own weights (a modulated convolution) can define
    `count_macs(self, inputs, output) -> int`; it is counted the same way.
    """
    total = [0]

    def hook_for(counter: Callable[..., int]) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
            total[0] += counter(module, inputs[0], output)

        return hook

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
            handles.append(module.register_forward_hook(hook_for(conv_macs)))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(hook_for(linear_macs)))
        elif hasattr(module, "count_macs"):
            handles.append(module.register_forward_hook(hook_for(type(module).count_macs)))
    try:
        with torch.no_grad():
            model(*example)
    finally:
        for handle in handles:
            handle.remove()
    return total[0]


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
