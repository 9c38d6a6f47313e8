"""InSwapper-128 stand-in: a SimSwap-style AdaIN generator at InSwapper's widths.

Encoder 128 -> 32 px (channels 128/256/512/1024), six AdaIN residual blocks at 1024 channels
conditioned on the 512-d source latent, decoder back to 128 px, output in [0, 1].
"""

from __future__ import annotations

import torch
from torch import nn


def _conv(c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.ReflectionPad2d(kernel // 2), nn.Conv2d(c_in, c_out, kernel, stride), nn.LeakyReLU(0.2)
    )


class ApplyStyle(nn.Module):
    """AdaIN modulation: per-channel scale and shift predicted from the source latent."""

    def __init__(self, latent: int, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.linear = nn.Linear(latent, channels * 2)

    def forward(self, x: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        style = self.linear(latent).view(-1, 2, self.channels, 1, 1)
        return x * (style[:, 0] + 1.0) + style[:, 1]


class AdaINBlock(nn.Module):
    def __init__(self, channels: int, latent: int) -> None:
        super().__init__()
        self.pad1, self.pad2 = nn.ReflectionPad2d(1), nn.ReflectionPad2d(1)
        self.conv1 = nn.Conv2d(channels, channels, 3)
        self.conv2 = nn.Conv2d(channels, channels, 3)
        self.norm1 = nn.InstanceNorm2d(channels)
        self.norm2 = nn.InstanceNorm2d(channels)
        self.style1 = ApplyStyle(latent, channels)
        self.style2 = ApplyStyle(latent, channels)

    def forward(self, x: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.style1(self.norm1(self.conv1(self.pad1(x))), latent))
        y = self.style2(self.norm2(self.conv2(self.pad2(y))), latent)
        return x + y


class InSwapperStandin(nn.Module):
    def __init__(self, latent: int = 512, blocks: int = 6) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            _conv(3, 128, 7),
            _conv(128, 128),
            _conv(128, 256, stride=2),
            _conv(256, 512, stride=2),
            _conv(512, 1024),
        )
        self.blocks = nn.ModuleList(AdaINBlock(1024, latent) for _ in range(blocks))
        self.decoder = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            _conv(1024, 512),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            _conv(512, 256),
            _conv(256, 128),
            _conv(128, 128),
            _conv(128, 128),
            nn.ReflectionPad2d(3),
            nn.Conv2d(128, 3, 7),
        )

    def forward(self, target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        x = self.encoder(target)
        for block in self.blocks:
            x = block(x, source)
        return (torch.tanh(self.decoder(x)) + 1.0) / 2.0


def example_inputs() -> tuple[torch.Tensor, ...]:
    return torch.rand(1, 3, 128, 128), torch.randn(1, 512) / 512**0.5
