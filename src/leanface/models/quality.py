"""Face-quality networks (QAN++'s quality branch; RECOGNITION_FACTS.md §4): the "quality" task's family.

A tiny ResNet on the aligned 112x112 crop: a 3x3 stem conv, four stages of basic blocks ([2, 2, 2, 2],
8/16/32/48 channels, stride 2 each), global average pooling and a 1x1 conv to one scalar. forward gives
the raw score (a logit); forward_export the quality in (0, 1) (sigmoid), one per face. How the authors
trained it is unknown; ours learns a target that face-image-quality methods use (leanface.train.quality).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from .registry import CropModelConfig, Family, register_family, register_model


@dataclass(frozen=True)
class QualityNetConfig(CropModelConfig):
    """channels / blocks per stage (each stage's first block has stride 2)."""

    name: str
    stem_channels: int = 8
    channels: tuple[int, ...] = (8, 16, 32, 48)
    blocks: tuple[int, ...] = (2, 2, 2, 2)
    input_size: int = 112
    family: Literal["qualitynet"] = "qualitynet"
    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)
    std: tuple[float, float, float] = (127.5, 127.5, 127.5)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                                  nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class QualityNet(nn.Module):
    """forward(x (B, 3, 112, 112)) -> (B,) raw quality scores; forward_export -> ((B, 1) qualities in (0, 1),)."""

    def __init__(self, cfg: QualityNetConfig):
        super().__init__()
        self.cfg = cfg
        c = cfg.stem_channels
        layers: list[nn.Module] = [nn.Conv2d(3, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
        for width, n in zip(cfg.channels, cfg.blocks):
            for i in range(n):
                layers.append(BasicBlock(c, width, 2 if i == 0 else 1))
                c = width
        self.features = nn.Sequential(*layers)
        self.score = nn.Conv2d(c, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.score(self.features(x).mean((2, 3), keepdim=True)).flatten()

    @property
    def output_names(self) -> list[str]:
        return ["quality"]

    def forward_export(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        return (torch.sigmoid(self(x)).unsqueeze(1),)


register_family(Family("qualitynet", "quality", QualityNetConfig, QualityNet))


@register_model
def qualitynet() -> QualityNetConfig:
    """QAN++'s quality network as the authors' code builds it (8/16/32/48 channels, [2, 2, 2, 2] blocks)."""
    return QualityNetConfig("qualitynet")
