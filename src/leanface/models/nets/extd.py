"""The EXTD network (its config and zoo: leanface.models.extd)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..extd import EXTDConfig
from .ssd import SSDDetector



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
