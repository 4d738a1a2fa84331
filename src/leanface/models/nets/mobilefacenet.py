"""The MobileFaceNet network (its config and zoo: leanface.models.mobilefacenet)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..mobilefacenet import MobileFaceNetConfig



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
