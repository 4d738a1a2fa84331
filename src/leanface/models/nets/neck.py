"""PAFPN neck over backbone levels /8, /16, /32 (the /4 map is unused)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _Conv(nn.Module):
    """mmcv ConvModule without norm/activation: keeps the `<name>.conv.weight` key layout."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, k // 2, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class PAFPN(nn.Module):
    def __init__(self, in_channels: tuple[int, int, int], out_channels: int):
        super().__init__()
        c = out_channels
        self.lateral_convs = nn.ModuleList(_Conv(cin, c, 1) for cin in in_channels)
        self.fpn_convs = nn.ModuleList(_Conv(c, c, 3) for _ in in_channels)
        self.downsample_convs = nn.ModuleList(_Conv(c, c, 3, 2) for _ in in_channels[1:])
        self.pafpn_convs = nn.ModuleList(_Conv(c, c, 3) for _ in in_channels[1:])

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        """feats: backbone maps at strides 8, 16, 32 -> three maps of `out_channels` at the same strides."""
        lat = [conv(f) for conv, f in zip(self.lateral_convs, feats)]
        for i in range(len(lat) - 1, 0, -1):
            lat[i - 1] = lat[i - 1] + F.interpolate(lat[i], size=lat[i - 1].shape[2:], mode="nearest")
        mid = [conv(t) for conv, t in zip(self.fpn_convs, lat)]
        for i, down in enumerate(self.downsample_convs):
            mid[i + 1] = mid[i + 1] + down(mid[i])
        return [mid[0]] + [conv(t) for conv, t in zip(self.pafpn_convs, mid[1:])]
