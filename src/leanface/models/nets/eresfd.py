"""The EResFD network (its config and zoo: leanface.models.eresfd)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..eresfd import EResFDConfig
from .ssd import SSDDetector



def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, relu: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)


class ResBlock(nn.Module):
    """3x3 conv-BN-ReLU-3x3 conv-BN plus shortcut (1x1 conv-BN when the shape changes); no ReLU after the sum."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv = nn.Sequential(*_conv_bn(cin, cout, 3, stride), *_conv_bn(cout, cout, 3, relu=False))
        self.shortcut = _conv_bn(cin, cout, 1, stride, relu=False) if cin != cout or stride != 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + (x if self.shortcut is None else self.shortcut(x))


class EResNet(nn.Module):
    """Stride-4 stem (5x5/4 conv-BN without ReLU, two 3x3 conv-BN-ReLU, one ResBlock), then 5 stride-2 stages.

    forward -> six maps (B, channels, ceil(H/4) ... ), strides 4, 8, 16, 32, 64, 128.
    """

    def __init__(self, cfg: EResFDConfig):
        super().__init__()
        c0, c = cfg.stem_channels, cfg.channels
        self.conv1 = _conv_bn(3, c0, 5, stride=4, relu=False)
        self.conv2 = _conv_bn(c0, c0, 3)
        self.conv3 = _conv_bn(c0, c, 3)
        self.conv4 = ResBlock(c, c)
        self.stages = nn.ModuleList(
            nn.Sequential(ResBlock(c, c, 2), *(ResBlock(c, c) for _ in range(n - 1))) for n in cfg.stage_blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.conv4(self.conv3(self.conv2(self.conv1(x))))
        maps = [x]
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps


class SeparatedFPN(nn.Module):
    """EResFD's "fully separated" FPN over six equal-width maps S0..S5 (fine to coarse).

    Two top-down paths that never mix: a low path T3 -> T0 seeded by the raw S4, and a high path T4
    seeded by the raw S5. Every merge is a weighted mean (w0 a + w1 b) / (w0 + w1 + eps) with learned
    weights, one column of `fusion_weights` (2, 9) per merge, ReLU'd and column-normalised first.
    Levels 1-4 are then refined by a 3x3 conv and merged again with their backbone map; S5 passes through.
    """

    eps = 1e-4

    def __init__(self, channels: int):
        super().__init__()
        self.laterals = nn.ModuleList(_conv_bn(channels, channels, 1) for _ in range(5))
        self.refine = nn.ModuleList(_conv_bn(channels, channels, 3) for _ in range(4))
        self.fusion_weights = nn.Parameter(torch.full((2, 9), 0.5))

    def forward(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        w = F.relu(self.fusion_weights)
        w = w / (w.sum(dim=0) + self.eps)

        def merge(a: torch.Tensor, b: torch.Tensor, col: int, upsample: bool = False) -> torch.Tensor:
            if upsample:  # nearest to the exact size: source index floor(dst * in / out), e.g. 15 -> 8 rows
                b = F.interpolate(b, size=a.shape[-2:], mode="nearest")
            return (w[0, col] * a + w[1, col] * b) / (w[0, col] + w[1, col] + self.eps)

        lat = [conv(m) for conv, m in zip(self.laterals, maps)]
        high = merge(lat[4], maps[5], 4, upsample=True)
        low = [merge(lat[3], maps[4], 3, upsample=True)]
        for i in (2, 1, 0):
            low.insert(0, merge(lat[i], low[0], i, upsample=True))
        out = [low[0]]
        out += [merge(self.refine[i - 1](low[i]), maps[i], 4 + i) for i in (1, 2, 3)]
        out.append(merge(self.refine[3](high), maps[4], 8))
        out.append(maps[5])
        return out


class ContextModule(nn.Module):
    """FEM: 3x3 conv to C/2, then two chained pairs of 3x3 convs to C/4; the three outputs concatenated (C)."""

    def __init__(self, c: int):
        super().__init__()
        self.branch1 = _conv_bn(c, c // 2, 3)
        self.branch2 = nn.Sequential(*_conv_bn(c // 2, c // 4, 3), *_conv_bn(c // 4, c // 4, 3))
        self.branch3 = nn.Sequential(*_conv_bn(c // 4, c // 4, 3), *_conv_bn(c // 4, c // 4, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch1(x)
        b = self.branch2(a)
        return torch.cat([a, b, self.branch3(b)], dim=1)


class EResFD(SSDDetector):
    """forward(x) -> (loc (B, N, 4), conf (B, N, 2) logits); see SSDDetector.

    The official heads apply a ReLU before each 1x1 conv; the context modules end in ReLUs, so it is
    an identity and is left out.
    """

    def __init__(self, cfg: EResFDConfig):
        super().__init__(cfg.anchors, cfg.channels, head_kernel=1)
        self.cfg = cfg
        self.backbone = EResNet(cfg)
        self.neck = SeparatedFPN(cfg.channels)
        self.context = nn.ModuleList(ContextModule(cfg.channels) for _ in cfg.anchors.strides)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [fem(m) for fem, m in zip(self.context, self.neck(self.backbone(x)))]
