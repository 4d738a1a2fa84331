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

from .registry import Family, network, register_family, register_model
from .ssd import SSD_PRESETS, SSDAnchorConfig, SSDDecoder, SSDFamilyConfig


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


register_family(Family("extd", "detect", EXTDConfig, network("extd", "EXTD"), SSDDecoder, SSD_PRESETS))

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
