"""SCRFD's typed, frozen configs. A zoo entry and a searched architecture are the same type.

Like every family's config, SCRFDConfig carries `family` (the registry record that builds and
decodes it), so inference, export and evaluation need no per-model code.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Union

from .registry import ModelConfig


@dataclass(frozen=True)
class MobileNetConfig:
    """MobileNetV1 backbone of SCRFD-0.5/1 GF: `planes` = p0..p5, `blocks` = 4 stage depths."""

    planes: tuple[int, int, int, int, int, int]
    blocks: tuple[int, int, int, int]
    kind: Literal["mobilenet"] = "mobilenet"

    @property
    def out_channels(self) -> tuple[int, int, int, int]:
        return tuple(self.planes[2:])  # type: ignore[return-value]


@dataclass(frozen=True)
class ResNetConfig:
    """ResNetV1e backbone (deep stem, avg-down shortcuts, 2x2 max-pool) of SCRFD-2.5/10/34 GF."""

    block: Literal["basic", "bottleneck"]
    base_channels: int
    planes: tuple[int, int, int, int]
    blocks: tuple[int, int, int, int]
    kind: Literal["resnet"] = "resnet"

    @property
    def expansion(self) -> int:
        return 1 if self.block == "basic" else 4

    @property
    def out_channels(self) -> tuple[int, int, int, int]:
        return tuple(p * self.expansion for p in self.planes)  # type: ignore[return-value]


@dataclass(frozen=True)
class PAFPNConfig:
    """PAFPN over backbone levels /8, /16, /32; convs with bias, no norm, no activation."""

    out_channels: int


@dataclass(frozen=True)
class SCRFDHeadConfig:
    """Shared-tower SCRFD head. `shared`: one tower/predictor set for all strides (mmdet strides_share)."""

    feat_channels: int
    stacked_convs: int
    norm: Literal["gn", "bn"]
    shared: bool
    dw_conv: bool
    use_scale: bool
    use_kps: bool
    gn_groups: int = 16
    num_anchors: int = 2
    strides: tuple[int, ...] = (8, 16, 32)
    # Anchor base sizes per level, times scales (1, 2): used by the ATSS assigner in training only.
    base_sizes: tuple[int, ...] = (16, 64, 256)
    anchor_scales: tuple[float, ...] = (1.0, 2.0)


Backbone = Union[MobileNetConfig, ResNetConfig]


@dataclass(frozen=True)
class SCRFDConfig(ModelConfig):
    name: str
    backbone: Backbone
    neck: PAFPNConfig
    head: SCRFDHeadConfig
    family: Literal["scrfd"] = "scrfd"
    # Input normalisation: RGB, (pixel - mean) / std.
    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)
    std: tuple[float, float, float] = (128.0, 128.0, 128.0)

    @property
    def has_landmarks(self) -> bool:
        return self.head.use_kps

    @property
    def strides(self) -> tuple[int, ...]:
        return self.head.strides
