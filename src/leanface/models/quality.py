"""Face-quality networks (QAN++'s quality branch; RECOGNITION_FACTS.md §4): the "quality" task's family.

A tiny ResNet on the aligned 112x112 crop: a 3x3 stem conv, four stages of basic blocks ([2, 2, 2, 2],
8/16/32/48 channels, stride 2 each), global average pooling and a 1x1 conv to one scalar. forward gives
the raw score (a logit); forward_export the quality in (0, 1) (sigmoid), one per face. How the authors
trained it is unknown; ours learns a target that face-image-quality methods use (leanface.train.quality).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .registry import CropModelConfig, Family, network, register_family, register_model


@dataclass(frozen=True)
class QualityNetConfig(CropModelConfig):
    """channels / blocks per stage (each stage's first block has stride 2)."""

    name: str
    stem_channels: int = 8
    channels: tuple[int, ...] = (8, 16, 32, 48)
    blocks: tuple[int, ...] = (2, 2, 2, 2)
    input_size: int = 112
    family: Literal["qualitynet"] = "qualitynet"
    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)
    std: tuple[float, float, float] = (127.5, 127.5, 127.5)


register_family(Family("qualitynet", "quality", QualityNetConfig, network("quality", "QualityNet")))


@register_model
def qualitynet() -> QualityNetConfig:
    """QAN++'s quality network as the authors' code builds it (8/16/32/48 channels, [2, 2, 2, 2] blocks)."""
    return QualityNetConfig("qualitynet")
