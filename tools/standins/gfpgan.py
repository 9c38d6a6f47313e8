"""GFPGAN v1.4 stand-in: GFPGANv1Clean at 512 px (U-Net encoder, SFT-conditioned StyleGAN2 decoder).

Follows the published architecture (channel multiplier 2, 16 separate latents from one linear
layer, half-channel SFT, bilinear resampling). Approximations: no noise injection (a per-pixel add;
the real export adds fixed or random noise), and the StyleGAN2 mapping MLP is left out: with
latents from the encoder it is never run, so an ONNX export drops it.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

SIZE = 512
STYLE = 512
LOG_SIZE = int(math.log2(SIZE))


def _interpolate(x: torch.Tensor, factor: float) -> torch.Tensor:
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, factor: float) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_in, 3, 1, 1)
        self.conv2 = nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.skip = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.leaky_relu(self.conv1(x), 0.2)
        out = F.leaky_relu(self.conv2(_interpolate(out, self.factor)), 0.2)
        return out + self.skip(_interpolate(x, self.factor))


class ModulatedConv2d(nn.Module):
    """StyleGAN2 convolution whose weights are scaled per input channel by the style (batch 1)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, demodulate: bool, upsample: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, kernel, kernel) / math.sqrt(c_in * kernel**2))
        self.modulation = nn.Linear(STYLE, c_in)
        nn.init.constant_(self.modulation.bias, 1.0)
        self.demodulate, self.upsample, self.padding = demodulate, upsample, kernel // 2

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        weight = self.weight * self.modulation(style).view(1, -1, 1, 1)
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
        if self.upsample:
            x = _interpolate(x, 2.0)
        return F.conv2d(x, weight, padding=self.padding)

    def count_macs(self, inputs: torch.Tensor, output: torch.Tensor) -> int:
        _, c_in, kh, kw = self.weight.shape
        return output.numel() * c_in * kh * kw


class StyleConv(nn.Module):
    def __init__(self, c_in: int, c_out: int, upsample: bool) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(c_in, c_out, 3, demodulate=True, upsample=upsample)
        self.bias = nn.Parameter(torch.zeros(1, c_out, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.conv(x, style) + self.bias, 0.2) * math.sqrt(2.0)


class ToRGB(nn.Module):
    def __init__(self, c_in: int) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(c_in, 3, 1, demodulate=False, upsample=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias
        return out if skip is None else out + _interpolate(skip, 2.0)


def _decoder_channels(size: int) -> int:
    return {4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256, 256: 128, 512: 64}[size]


def _unet_channels(size: int) -> int:
    return _decoder_channels(size) // 2


class GfpganStandin(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        levels = [2**i for i in range(3, LOG_SIZE + 1)]  # 8 .. 512
        self.body_first = nn.Conv2d(3, _unet_channels(SIZE), 1)
        self.body_down = nn.ModuleList(
            ResBlock(_unet_channels(s), _unet_channels(s // 2), 0.5) for s in reversed(levels)
        )
        self.final_conv = nn.Conv2d(_unet_channels(4), _unet_channels(4), 3, 1, 1)
        self.body_up = nn.ModuleList(ResBlock(_unet_channels(s // 2), _unet_channels(s), 2.0) for s in levels)
        self.final_linear = nn.Linear(_unet_channels(4) * 16, STYLE * (LOG_SIZE * 2 - 2))

        def sft(channels: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(channels, channels, 3, 1, 1),
                nn.LeakyReLU(0.2),
                nn.Conv2d(channels, channels, 3, 1, 1),
            )

        self.condition_scale = nn.ModuleList(sft(_unet_channels(s)) for s in levels)
        self.condition_shift = nn.ModuleList(sft(_unet_channels(s)) for s in levels)

        self.constant = nn.Parameter(torch.randn(1, 512, 4, 4))
        self.style_conv1 = StyleConv(512, 512, upsample=False)
        self.to_rgb1 = ToRGB(512)
        self.style_convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        for s in levels:
            c_in, c_out = _decoder_channels(s // 2), _decoder_channels(s)
            self.style_convs.append(StyleConv(c_in, c_out, upsample=True))
            self.style_convs.append(StyleConv(c_out, c_out, upsample=False))
            self.to_rgbs.append(ToRGB(c_out))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        feat = F.leaky_relu(self.body_first(image), 0.2)
        skips = []
        for block in self.body_down:
            feat = block(feat)
            skips.insert(0, feat)
        feat = F.leaky_relu(self.final_conv(feat), 0.2)
        latent = self.final_linear(feat.flatten(1)).view(-1, LOG_SIZE * 2 - 2, STYLE)
        conditions = []
        for block, skip, scale, shift in zip(
            self.body_up, skips, self.condition_scale, self.condition_shift, strict=True
        ):
            feat = block(feat + skip)
            conditions.append((scale(feat), shift(feat)))

        out = self.style_conv1(self.constant, latent[:, 0])
        rgb = self.to_rgb1(out, latent[:, 1], None)
        for level, (scale, shift) in enumerate(conditions):
            i = 1 + 2 * level
            out = self.style_convs[2 * level](out, latent[:, i])
            same, sft = torch.split(out, out.shape[1] // 2, dim=1)
            out = torch.cat([same, sft * scale + shift], dim=1)
            out = self.style_convs[2 * level + 1](out, latent[:, i + 1])
            rgb = self.to_rgbs[level](out, latent[:, i + 2], rgb)
        return torch.tanh(rgb)


def example_inputs() -> tuple[torch.Tensor, ...]:
    return (torch.rand(1, 3, SIZE, SIZE) * 2.0 - 1.0,)
