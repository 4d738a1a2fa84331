"""EXTD (Yoo et al., arXiv 1906.06579): one tiny MobileFaceNet-style block group reused for every scale.

The stem and block group make a stride-4 map; the same group (shared weights, ending in a stride-2
block) is applied again five times for strides 8..128 ("iterative filter reuse"). A top-down path
(bilinear upsampling, depthwise-separable conv, add) fuses the maps; 3x3 SSD heads predict on them.

Training: as in the official code, each BatchNorm of the reused group serves all six passes, so its
one set of running statistics mixes six distributions, and weights learned with batch statistics
fail in eval mode. The official training ran in eval mode after its first epoch (its per-epoch
validation calls net.eval() and nothing switches back), so the released weights were learned with
frozen statistics: fine-tune them with `TrainConfig(freeze_bn_after=0)`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .registry import Family, register_family, register_model
from .ssd import SSD_POSTPROCESS, SSDAnchorConfig, SSDDecoder, SSDDetector, SSDFamilyConfig


@dataclass(frozen=True)
class EXTDConfig(SSDFamilyConfig):
    """`blocks`: rows (expansion t, repeats n, stride of the row's LAST block) of inverted residuals after the
    stem. Row 0 makes the stride-4 map with the stem; rows 1.. form the group that is reused per level.
    `project_act`: PReLU after the projection BN (the EXTD_32 blocks have it, 48/64 do not)."""

    name: str
    channels: int
    blocks: tuple[tuple[int, int, int], ...]
    project_act: bool
    stem_channels: int = 64
    anchors: SSDAnchorConfig = field(default_factory=SSDAnchorConfig)
    family: Literal["extd"] = "extd"
    # Input normalisation: RGB, (pixel - mean) / std.
    mean: tuple[float, float, float] = (123.0, 117.0, 104.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)


class InvertedResidual(nn.Module):
    """[1x1 expand-BN-PReLU] -> 3x3 depthwise (with bias)-BN-PReLU -> 1x1 project-BN [-PReLU], plus the input
    when stride 1 and cin == cout. No expand conv when t == 1. PReLUs have one shared slope."""

    def __init__(self, cin: int, cout: int, stride: int, t: int, project_act: bool):
        super().__init__()
        hidden = cin * t
        layers: list[nn.Module] = []
        if t != 1:
            layers += [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.PReLU()]
        layers += [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden), nn.BatchNorm2d(hidden), nn.PReLU(),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        if project_act:
            layers.append(nn.PReLU())
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


def _top_down_block(c: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, groups=c, bias=False), nn.Conv2d(c, c, 1, bias=False),
                         nn.BatchNorm2d(c), nn.ReLU())


class EXTD(SSDDetector):
    """forward(x) -> (loc (B, N, 4), conf (B, N, 2) logits); see SSDDetector.

    `backbone[0]` is the stem (3x3/2 conv-BN-PReLU), `backbone[1:]` the inverted residuals in table order;
    `backbone[reuse_from:]` is the group applied once per extra level. `neck[k]` upsamples level 5-k onto 4-k.
    """

    def __init__(self, cfg: EXTDConfig):
        super().__init__(cfg.anchors, cfg.channels, head_kernel=3)
        self.cfg = cfg
        c = cfg.channels
        layers: list[nn.Module] = [nn.Sequential(nn.Conv2d(3, cfg.stem_channels, 3, 2, 1, bias=False),
                                                 nn.BatchNorm2d(cfg.stem_channels), nn.PReLU())]
        cin = cfg.stem_channels
        for t, n, s in cfg.blocks:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == n - 1 else 1, t, cfg.project_act))
                cin = c
        self.backbone = nn.ModuleList(layers)
        self.reuse_from = 1 + cfg.blocks[0][1]
        self.neck = nn.ModuleList(_top_down_block(c) for _ in cfg.anchors.strides[1:])

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        for m in self.backbone:
            x = m(x)
        maps = [x]
        for _ in self.cfg.anchors.strides[1:]:
            for m in self.backbone[self.reuse_from:]:
                x = m(x)
            maps.append(x)
        fused = [maps[-1]]
        for block, finer in zip(self.neck, reversed(maps[:-1])):
            up = F.interpolate(fused[-1], size=finer.shape[-2:], mode="bilinear", align_corners=False)
            fused.append(block(up) + finer)
        return fused[::-1]


register_family(Family("extd", "detection", EXTDConfig, EXTD, SSDDecoder, SSD_POSTPROCESS))

# Rows of the official mobileFacenet_{32,48,64}_PReLU tables that the detector uses (t, n, s).
_ROWS_32 = ((1, 1, 1), (2, 2, 1), (4, 2, 1), (2, 2, 2))
_ROWS_48_64 = ((1, 1, 1), (2, 2, 1), (4, 2, 2))


@register_model
def extd_32() -> EXTDConfig:
    return EXTDConfig("extd_32", channels=32, blocks=_ROWS_32, project_act=True)


@register_model
def extd_48() -> EXTDConfig:
    return EXTDConfig("extd_48", channels=48, blocks=_ROWS_48_64, project_act=False)


@register_model
def extd_64() -> EXTDConfig:
    return EXTDConfig("extd_64", channels=64, blocks=_ROWS_48_64, project_act=False)
