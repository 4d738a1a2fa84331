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

from .registry import CropModelConfig, Family, register_family, register_model


@dataclass(frozen=True)
class MobileFaceNetConfig(CropModelConfig):
    """stages: (expansion t, width c, blocks n, first stride s) per stage, as in the paper's Table 1."""

    name: str
    stem_channels: int = 64
    stages: tuple[tuple[int, int, int, int], ...] = ((2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2),
                                                      (2, 128, 2, 1))
    conv_channels: int = 512
    embedding_size: int = 128
    # Depthwise kernel size per stage (None: 3 everywhere, the paper's); a search dimension.
    kernels: tuple[int, ...] | None = None
    input_size: int = 112
    family: Literal["mobilefacenet"] = "mobilefacenet"
    # Input normalisation: RGB, (pixel - mean) / std (the insightface convention for 112x112 crops).
    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)
    std: tuple[float, float, float] = (127.5, 127.5, 127.5)


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True,
             padding: int | None = None) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2 if padding is None else padding, groups=groups, bias=False),
              nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, nn.PReLU(cout)) if act else nn.Sequential(*layers)


class Bottleneck(nn.Module):
    """Inverted residual: 1x1 expand (PReLU) -> depthwise k x k (PReLU; 3 in the paper) -> 1x1 linear projection; a shortcut
    when the shape is kept."""

    def __init__(self, cin: int, cout: int, expansion: int, stride: int, kernel: int = 3):
        super().__init__()
        hidden = cin * expansion
        self.residual = stride == 1 and cin == cout
        self.block = nn.Sequential(_conv_bn(cin, hidden, 1), _conv_bn(hidden, hidden, kernel, stride, groups=hidden),
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
        kernels = cfg.kernels or (3,) * len(cfg.stages)
        for (t, width, n, s), k in zip(cfg.stages, kernels):
            for i in range(n):
                layers.append(Bottleneck(c, width, t, s if i == 0 else 1, k))
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


# The FLOPs-budgeted family at 0.1 / 0.25 / 0.5 / 1 G multiply-adds at 112x112 (within +-2%): MobileFaceNet
# scaled in width (all widths x a, multiples of 8) and, where width alone overshoots the budget's
# +-2% window, in depth (repeated stages x d), the smallest change that lands in it. Found by
# `leanface.search.embed_space.scale_to_budget`; the Ray search's best configs replace these
# where it ran long enough (README: "Recognition under a FLOPs budget").
@register_model
def mobilefacenet_0_1g() -> MobileFaceNetConfig:
    """0.0995 G MACs, 0.45 M params: widths x0.72, repeated stages x0.67."""
    return MobileFaceNetConfig("mobilefacenet_0_1g", stem_channels=48, conv_channels=368,
                               stages=((2, 48, 3, 2), (4, 96, 1, 2), (2, 96, 4, 1), (4, 96, 1, 2), (2, 96, 1, 1)))


@register_model
def mobilefacenet_0_25g() -> MobileFaceNetConfig:
    """0.247 G MACs, 1.04 M params: widths x0.85, repeated stages x1.5."""
    return MobileFaceNetConfig("mobilefacenet_0_25g", stem_channels=56, conv_channels=432,
                               stages=((2, 56, 8, 2), (4, 112, 1, 2), (2, 112, 9, 1), (4, 112, 1, 2), (2, 112, 3, 1)))


@register_model
def mobilefacenet_0_5g() -> MobileFaceNetConfig:
    """0.499 G MACs, 2.14 M params: widths x1.47."""
    return MobileFaceNetConfig("mobilefacenet_0_5g", stem_channels=96, conv_channels=752,
                               stages=((2, 96, 5, 2), (4, 192, 1, 2), (2, 192, 6, 1), (4, 192, 1, 2), (2, 192, 2, 1)))


@register_model
def mobilefacenet_1g() -> MobileFaceNetConfig:
    """0.980 G MACs, 4.16 M params: widths x2.1."""
    return MobileFaceNetConfig("mobilefacenet_1g", stem_channels=136, conv_channels=1072,
                               stages=((2, 136, 5, 2), (4, 272, 1, 2), (2, 272, 6, 1), (4, 272, 1, 2), (2, 272, 2, 1)))
