"""The face-quality network (its config: leanface.models.quality)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..quality import QualityNetConfig



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
