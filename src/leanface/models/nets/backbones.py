"""SCRFD backbones: MobileNetV1 (0.5/1 GF) and ResNetV1e (2.5/10/34 GF).

Module names follow the official mmdet code so official checkpoints load by key.
Both return four maps at strides 4, 8, 16, 32 (channels `cfg.out_channels`).
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import MobileNetConfig, ResNetConfig


def _conv_bn(cin: int, cout: int, stride: int) -> nn.Sequential:
    # Keys .0 conv, .1 bn, as in the official conv_bn.
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _conv_dw(cin: int, cout: int, stride: int) -> nn.Sequential:
    # Depthwise 3x3 (.0/.1) then pointwise 1x1 (.3/.4), each with BN and ReLU.
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU(inplace=True),
        nn.Conv2d(cin, cout, 1, 1, 0, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class MobileNetV1(nn.Module):
    def __init__(self, cfg: MobileNetConfig):
        super().__init__()
        p = cfg.planes
        self.stem = nn.Sequential(_conv_bn(3, p[0], 2), _conv_dw(p[0], p[1], 1))
        for i, n in enumerate(cfg.blocks):
            blocks = [_conv_dw(p[i + 1], p[i + 2], 2)] + [_conv_dw(p[i + 2], p[i + 2], 1) for _ in range(n - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        outs = []
        for i in range(4):
            x = getattr(self, f"layer{i + 1}")(x)
            outs.append(x)
        return outs


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int, downsample: nn.Module | None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        # The shortcut runs after the main path, as in mmdet: weight import relies on this order.
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int, downsample: nn.Module | None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, 1, 0, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)  # 'pytorch' style: stride on the 3x3
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, 1, 0, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNetV1e(nn.Module):
    """Deep stem (three 3x3 convs), 2x2/s2 max-pool, avg-pool-then-1x1 shortcuts."""

    def __init__(self, cfg: ResNetConfig):
        super().__init__()
        s = cfg.base_channels
        self.stem = nn.Sequential(
            nn.Conv2d(3, s // 2, 3, 2, 1, bias=False), nn.BatchNorm2d(s // 2), nn.ReLU(inplace=True),
            nn.Conv2d(s // 2, s // 2, 3, 1, 1, bias=False), nn.BatchNorm2d(s // 2), nn.ReLU(inplace=True),
            nn.Conv2d(s // 2, s, 3, 1, 1, bias=False), nn.BatchNorm2d(s), nn.ReLU(inplace=True),
        )
        self.maxpool = nn.MaxPool2d(2, 2, 0)
        block = BasicBlock if cfg.block == "basic" else Bottleneck
        cin = s
        for i, (planes, n) in enumerate(zip(cfg.planes, cfg.blocks)):
            stride = 1 if i == 0 else 2
            cout = planes * block.expansion
            downsample = None
            if stride != 1 or cin != cout:
                # The pool is always present (a 1x1 identity pool at stride 1), so conv/bn keys are .1/.2.
                downsample = nn.Sequential(
                    nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False),
                    nn.Conv2d(cin, cout, 1, 1, 0, bias=False), nn.BatchNorm2d(cout),
                )
            layers = [block(cin, planes, stride, downsample)] + [block(cout, planes, 1, None) for _ in range(n - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*layers))
            cin = cout

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.stem(x))
        outs = []
        for i in range(4):
            x = getattr(self, f"layer{i + 1}")(x)
            outs.append(x)
        return outs


def build_backbone(cfg: MobileNetConfig | ResNetConfig) -> nn.Module:
    return MobileNetV1(cfg) if cfg.kind == "mobilenet" else ResNetV1e(cfg)
