"""ArcFace w600k_r50 stand-in: insightface's IResNet-50 (layers 3/4/14/3, 512-d embedding)."""

from __future__ import annotations

import torch
from torch import nn


class IBasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(c_in, eps=1e-5),
            nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c_out, eps=1e-5),
            nn.PReLU(c_out),
            nn.Conv2d(c_out, c_out, 3, stride, 1, bias=False),
            nn.BatchNorm2d(c_out, eps=1e-5),
        )
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out, eps=1e-5)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.downsample(x)


class IResNet50(nn.Module):
    def __init__(self, layers: tuple[int, ...] = (3, 4, 14, 3), embedding: int = 512) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64))
        stages: list[nn.Module] = []
        c_in = 64
        for c_out, count in zip((64, 128, 256, 512), layers, strict=True):
            for index in range(count):
                stages.append(IBasicBlock(c_in, c_out, 2 if index == 0 else 1))
                c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.fc = nn.Linear(512 * 7 * 7, embedding)
        self.features = nn.BatchNorm1d(embedding, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn2(self.stages(self.stem(x)))
        return self.features(self.fc(torch.flatten(x, 1)))


def example_inputs() -> tuple[torch.Tensor, ...]:
    return (torch.rand(1, 3, 112, 112) * 2.0 - 1.0,)
