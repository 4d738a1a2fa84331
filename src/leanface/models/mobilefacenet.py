"""MobileFaceNet-style face embedders (Chen et al. 2018): the "embed" task's family.

112x112 RGB face crop (aligned by leanface.recognize) -> stem conv 3x3/2 -> depthwise 3x3 -> stages of
inverted-residual bottlenecks (expansion t, width c, n blocks, first stride s) -> 1x1 conv to
`conv_channels` -> global depthwise conv over the final 7x7 map (GDConv, linear) -> linear 1x1 conv to
the embedding, BatchNorm after every conv and PReLU after the non-linear ones. Every width, depth,
expansion and stride is a config field, so a FLOPs-budgeted search produces the same type. The zoo
entry `mobilefacenet` is the paper's Table 1: ~0.99 M parameters, ~0.22 G multiply-adds.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .registry import Family, ModelConfig, register_family, register_model


@dataclass(frozen=True)
class MobileFaceNetConfig(ModelConfig):
    """stages: (expansion t, width c, blocks n, first stride s) per stage, as in the paper's Table 1."""

    name: str
    stem_channels: int = 64
    stages: tuple[tuple[int, int, int, int], ...] = ((2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2),
                                                      (2, 128, 2, 1))
    conv_channels: int = 512
    embedding_size: int = 128
    input_size: int = 112
    family: Literal["mobilefacenet"] = "mobilefacenet"
    # Input normalisation: RGB, (pixel - mean) / std (the insightface convention for 112x112 crops).
    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)
    std: tuple[float, float, float] = (127.5, 127.5, 127.5)

    @property
    def has_landmarks(self) -> bool:
        return False

    @classmethod
    def from_dict(cls, d: dict) -> "MobileFaceNetConfig":
        d = dict(d)
        d["stages"] = tuple(tuple(s) for s in d["stages"])
        for key in ("mean", "std"):
            d[key] = tuple(d[key])
        return cls(**d)


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True,
             padding: int | None = None) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2 if padding is None else padding, groups=groups, bias=False),
              nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, nn.PReLU(cout)) if act else nn.Sequential(*layers)


class Bottleneck(nn.Module):
    """Inverted residual: 1x1 expand (PReLU) -> depthwise 3x3 (PReLU) -> 1x1 linear projection; a shortcut
    when the shape is kept."""

    def __init__(self, cin: int, cout: int, expansion: int, stride: int):
        super().__init__()
        hidden = cin * expansion
        self.residual = stride == 1 and cin == cout
        self.block = nn.Sequential(_conv_bn(cin, hidden, 1), _conv_bn(hidden, hidden, 3, stride, groups=hidden),
                                   _conv_bn(hidden, cout, 1, act=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.residual else self.block(x)


class MobileFaceNet(nn.Module):
    """forward(x (B, 3, S, S), S = cfg.input_size) -> (B, embedding_size) embeddings, not normalised;
    forward_export -> the same, L2-normalised (what the Recognizer and ONNX consumers use)."""

    def __init__(self, cfg: MobileFaceNetConfig):
        super().__init__()
        self.cfg = cfg
        c = cfg.stem_channels
        layers = [_conv_bn(3, c, 3, 2), _conv_bn(c, c, 3, 1, groups=c)]
        for t, width, n, s in cfg.stages:
            for i in range(n):
                layers.append(Bottleneck(c, width, t, s if i == 0 else 1))
                c = width
        layers.append(_conv_bn(c, cfg.conv_channels, 1))
        self.features = nn.Sequential(*layers)
        side = cfg.input_size // 2 ** (1 + sum(1 for t, w, n, s in cfg.stages if s == 2 and n > 0))
        # Global depthwise conv: a learned weighting of every position of the final map (linear).
        self.gdconv = _conv_bn(cfg.conv_channels, cfg.conv_channels, side, groups=cfg.conv_channels, act=False,
                               padding=0)
        self.embedding = _conv_bn(cfg.conv_channels, cfg.embedding_size, 1, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedding(self.gdconv(self.features(x))).flatten(1)

    @property
    def output_names(self) -> list[str]:
        return ["embedding"]

    def forward_export(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        return (F.normalize(self(x), dim=1),)


register_family(Family("mobilefacenet", "embed", MobileFaceNetConfig, MobileFaceNet))


@register_model
def mobilefacenet() -> MobileFaceNetConfig:
    """The paper's MobileFaceNet (Table 1), 128-d embeddings."""
    return MobileFaceNetConfig("mobilefacenet")
