"""SCRFD-10G-KPS stand-in (det_10g): ResNet-V1e backbone, PAFPN neck, one SCRFD head per stride.

Mirrors insightface's scrfd_10g_bnkps config: basic blocks (3, 4, 2, 3) with planes
(56, 88, 88, 224), a PAFPN over strides 8/16/32 with 56 channels, one head per stride (three
stacked 3x3 convs of 80 channels, then score/box/keypoint convs; strides_share=False), 2 anchors per
cell. Norms are BatchNorm (the "bn" in bnkps), folded into the convs on export. Outputs carry no
batch dimension, like the real export.
"""

from __future__ import annotations

import math

import torch
from torch import nn

STRIDES = (8, 16, 32)
ANCHORS = 2


def _conv_bn(c_in: int, c_out: int, stride: int = 1, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out)]
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv_bn(c_in, c_out, stride), _conv_bn(c_out, c_out, relu=False))
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            # ResNet-V1d/e shortcut: average-pool first so the 1x1 conv sees every pixel.
            pool: nn.Module = nn.AvgPool2d(stride, stride, ceil_mode=True) if stride != 1 else nn.Identity()
            self.downsample = nn.Sequential(
                pool, nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.downsample(x))


class Backbone(nn.Module):
    def __init__(
        self, blocks: tuple[int, ...] = (3, 4, 2, 3), planes: tuple[int, ...] = (56, 88, 88, 224)
    ) -> None:
        super().__init__()
        base = planes[0]
        self.stem = nn.Sequential(
            _conv_bn(3, base // 2, 2),
            _conv_bn(base // 2, base // 2),
            _conv_bn(base // 2, base),
            nn.MaxPool2d(3, 2, 1),
        )
        self.stages = nn.ModuleList()
        c_in = base
        for index, (count, c_out) in enumerate(zip(blocks, planes, strict=True)):
            stride = 1 if index == 0 else 2
            layers = [
                BasicBlock(c_in if i == 0 else c_out, c_out, stride if i == 0 else 1) for i in range(count)
            ]
            self.stages.append(nn.Sequential(*layers))
            c_in = c_out

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features[1:]  # strides 8, 16, 32


class PAFPN(nn.Module):
    def __init__(self, in_channels: tuple[int, ...] = (88, 88, 224), out: int = 56) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, out, 1) for c in in_channels)
        self.fpn = nn.ModuleList(nn.Conv2d(out, out, 3, 1, 1) for _ in in_channels)
        self.down = nn.ModuleList(nn.Conv2d(out, out, 3, 2, 1) for _ in in_channels[1:])
        self.pafpn = nn.ModuleList(nn.Conv2d(out, out, 3, 1, 1) for _ in in_channels[1:])

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        laterals = [conv(f) for conv, f in zip(self.lateral, features, strict=True)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + nn.functional.interpolate(laterals[i], scale_factor=2.0)
        outs = [conv(x) for conv, x in zip(self.fpn, laterals, strict=True)]
        for i in range(len(outs) - 1):
            outs[i + 1] = outs[i + 1] + self.down[i](outs[i])
        return [outs[0]] + [conv(x) for conv, x in zip(self.pafpn, outs[1:], strict=True)]


class Head(nn.Module):
    def __init__(self, c_in: int = 56, feat: int = 80, stacked: int = 3) -> None:
        super().__init__()
        convs: list[nn.Module] = []
        for i in range(stacked):
            convs += [
                nn.Conv2d(c_in if i == 0 else feat, feat, 3, 1, 1, bias=False),
                nn.BatchNorm2d(feat),
                nn.ReLU(),
            ]
        self.stack = nn.Sequential(*convs)
        self.cls = nn.Conv2d(feat, ANCHORS, 3, 1, 1)
        self.reg = nn.Conv2d(feat, ANCHORS * 4, 3, 1, 1)
        self.kps = nn.Conv2d(feat, ANCHORS * 10, 3, 1, 1)
        # Same prior as SCRFD's own init (p = 0.01), so scores stay low and decoding stays cheap.
        nn.init.normal_(self.cls.weight, std=0.01)
        nn.init.constant_(self.cls.bias, -math.log((1 - 0.01) / 0.01))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.stack(x)

        def flat(t: torch.Tensor, width: int) -> torch.Tensor:
            return t.permute(0, 2, 3, 1).reshape(-1, width)

        return flat(torch.sigmoid(self.cls(x)), 1), flat(self.reg(x), 4), flat(self.kps(x), 10)


class ScrfdStandin(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = Backbone()
        self.neck = PAFPN()
        self.heads = nn.ModuleList(Head() for _ in STRIDES)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        features = self.neck(self.backbone(image))
        per_stride = [head(f) for head, f in zip(self.heads, features, strict=True)]
        scores, boxes, kps = zip(*per_stride, strict=True)
        return (*scores, *boxes, *kps)


def example_inputs() -> tuple[torch.Tensor, ...]:
    return (torch.rand(1, 3, 640, 640) * 2.0 - 1.0,)
