"""The PyTorch module and example inputs behind each stand-in name (needs torch)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from standins import arcface, gfpgan, inswapper, scrfd

Builder = tuple[Callable[[], nn.Module], Callable[[], tuple[torch.Tensor, ...]]]

BUILDERS: dict[str, Builder] = {
    "det_10g": (scrfd.ScrfdStandin, scrfd.example_inputs),
    "w600k_r50": (arcface.IResNet50, arcface.example_inputs),
    "inswapper_128": (inswapper.InSwapperStandin, inswapper.example_inputs),
    "gfpgan_1.4": (gfpgan.GfpganStandin, gfpgan.example_inputs),
}
