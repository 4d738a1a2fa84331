"""MobileFaceNet-style face embedders (Chen et al. 2018): the "embed" task's family.

112x112 RGB face crop (aligned by leanface.recognize) -> stem conv 3x3/2 -> depthwise 3x3 -> stages of
inverted-residual bottlenecks (expansion t, width c, n blocks, first stride s) -> 1x1 conv to
`conv_channels` -> global depthwise conv over the final 7x7 map (GDConv, linear) -> linear 1x1 conv to
the embedding, BatchNorm after every conv and PReLU after the non-linear ones. Every width, depth,
expansion and stride is a config field, so a FLOPs-budgeted search produces the same type. The zoo
entry `mobilefacenet` is the paper's Table 1: ~0.99 M parameters, ~0.22 G multiply-adds.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .registry import CropModelConfig, Family, network, register_family, register_model


@dataclass(frozen=True)
class MobileFaceNetConfig(CropModelConfig):
    """stages: (expansion t, width c, blocks n, first stride s) per stage, as in the paper's Table 1."""

    name: str
    stem_channels: int = 64
    stages: tuple[tuple[int, int, int, int], ...] = ((2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2),
                                                      (2, 128, 2, 1))
    conv_channels: int = 512
    embedding_size: int = 128
    # Depthwise kernel size per stage (None: 3 everywhere, the paper's); a search dimension.
    kernels: tuple[int, ...] | None = None
    input_size: int = 112
    family: Literal["mobilefacenet"] = "mobilefacenet"
    # Input normalisation: RGB, (pixel - mean) / std (the insightface convention for 112x112 crops).
    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)
    std: tuple[float, float, float] = (127.5, 127.5, 127.5)


register_family(Family("mobilefacenet", "embed", MobileFaceNetConfig, network("mobilefacenet", "MobileFaceNet")))


@register_model
def mobilefacenet() -> MobileFaceNetConfig:
    """The paper's MobileFaceNet (Table 1), 128-d embeddings."""
    return MobileFaceNetConfig("mobilefacenet")


# The FLOPs-budgeted family at 0.1 / 0.25 / 0.5 / 1 G multiply-adds at 112x112 (within +-2%): MobileFaceNet
# scaled in width (all widths x a, multiples of 8) and, where width alone overshoots the budget's
# +-2% window, in depth (repeated stages x d), the smallest change that lands in it. Found by
# `leanface.search.embed_space.scale_to_budget`; the Ray search's best configs replace these
# where it ran long enough (README: "Recognition under a FLOPs budget").
@register_model
def mobilefacenet_0_1g() -> MobileFaceNetConfig:
    """0.0995 G MACs, 0.45 M params: widths x0.72, repeated stages x0.67."""
    return MobileFaceNetConfig("mobilefacenet_0_1g", stem_channels=48, conv_channels=368,
                               stages=((2, 48, 3, 2), (4, 96, 1, 2), (2, 96, 4, 1), (4, 96, 1, 2), (2, 96, 1, 1)))


@register_model
def mobilefacenet_0_25g() -> MobileFaceNetConfig:
    """0.247 G MACs, 1.04 M params: widths x0.85, repeated stages x1.5."""
    return MobileFaceNetConfig("mobilefacenet_0_25g", stem_channels=56, conv_channels=432,
                               stages=((2, 56, 8, 2), (4, 112, 1, 2), (2, 112, 9, 1), (4, 112, 1, 2), (2, 112, 3, 1)))


@register_model
def mobilefacenet_0_5g() -> MobileFaceNetConfig:
    """0.499 G MACs, 2.14 M params: widths x1.47."""
    return MobileFaceNetConfig("mobilefacenet_0_5g", stem_channels=96, conv_channels=752,
                               stages=((2, 96, 5, 2), (4, 192, 1, 2), (2, 192, 6, 1), (4, 192, 1, 2), (2, 192, 2, 1)))


@register_model
def mobilefacenet_1g() -> MobileFaceNetConfig:
    """0.980 G MACs, 4.16 M params: widths x2.1."""
    return MobileFaceNetConfig("mobilefacenet_1g", stem_channels=136, conv_channels=1072,
                               stages=((2, 136, 5, 2), (4, 272, 1, 2), (2, 272, 6, 1), (4, 272, 1, 2), (2, 272, 2, 1)))
