"""EResFD (Jeong et al., WACV 2024): a ResNet with very few channels, plain 3x3 convs, no depthwise.

backbone (EResNet) -> six maps at strides 4..128 -> separated FPN -> one context module (FEM) per
level -> 1x1 SSD heads. The released model (`eresfd_16`) has width multiplier 1/16: an 8-channel
stem and 16 channels everywhere after it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .registry import Family, network, register_family, register_model
from .ssd import SSD_PRESETS, SSDAnchorConfig, SSDDecoder, SSDFamilyConfig


@dataclass(frozen=True)
class EResFDConfig(SSDFamilyConfig):
    """`stage_blocks`: residual blocks of the five stride-2 stages after the stride-4 stem (six maps)."""

    name: str
    stem_channels: int = 8
    channels: int = 16
    stage_blocks: tuple[int, ...] = (3, 3, 3, 2, 2)
    # Height ratio 1.25: the default of the official test_wider.py and demo.py (the config file says 1.0).
    anchors: SSDAnchorConfig = field(default_factory=lambda: SSDAnchorConfig(height_ratio=1.25))
    family: Literal["eresfd"] = "eresfd"
    # Input normalisation: RGB, (pixel - mean) / std.
    mean: tuple[float, float, float] = (123.0, 117.0, 104.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self):
        if len(self.stage_blocks) != 5 or len(self.anchors.strides) != 6:
            raise ValueError("EResFD's feature aggregation is defined for exactly six levels (five stages)")


register_family(Family("eresfd", "detect", EResFDConfig, network("eresfd", "EResFD"), SSDDecoder, SSD_PRESETS))


@register_model
def eresfd() -> EResFDConfig:
    """The released EResFD (width multiplier 0.0625, `eresfd_16.pth`)."""
    return EResFDConfig("eresfd")
