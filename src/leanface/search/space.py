"""The SCRFD search space (paper section 4.2; insightface search_tools/generate_configs_2.5g.py).

Step 1 samples the backbone with the neck and head fixed; step 2 rescales a step-1 template's depth
and width and samples the neck and head. Both produce the zoo's own `SCRFDConfig` (ResNetV1e
backbone, PAFPN neck, shared GroupNorm head with Scale), so a sampled model trains, evaluates and
exports like any zoo model. Widths are multiples of 8 and never decrease from stage to stage.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..models.config import PAFPNConfig, ResNetConfig, SCRFDConfig, SCRFDHeadConfig

# The official step-1 template (scrfdgen2.5g_0) fixes neck 48 / head 96 x 2 convs at 2.5 GFLOPs.
_TEMPLATE_GFLOPS, _TEMPLATE_NECK, _TEMPLATE_HEAD, _TEMPLATE_CONVS = 2.5, 48, 96, 2


@dataclass(frozen=True)
class BackboneSpace:
    """Step 1 (inclusive ranges): block type, stem width, blocks per stage, width growth per stage.

    planes[0] = base_channels (rounded down to a multiple of 8, at least 8), then
    planes[k+1] = int(planes[k] * r_k) // 8 * 8 with r_k uniform in `width_growth` (>= 1: widths
    never decrease).
    """

    blocks: tuple[str, ...] = ("basic", "bottleneck")
    base_channels: tuple[int, int] = (8, 64)
    stage_blocks: tuple[int, int] = (1, 10)
    width_growth: tuple[float, float] = (1.0, 4.0)


@dataclass(frozen=True)
class FixedNeckHead:
    """Step 1's fixed neck and head: PAFPN channels, head channels, stacked 3x3 convs in the head."""

    neck_channels: int
    head_channels: int
    head_convs: int

    @classmethod
    def for_budget(cls, gflops: float) -> "FixedNeckHead":
        """The official 2.5 GF template's neck/head, widths scaled by sqrt(budget / 2.5) (FLOPs ~ width^2)."""
        scale = math.sqrt(gflops / _TEMPLATE_GFLOPS)
        return cls(_round8(_TEMPLATE_NECK * scale), _round8(_TEMPLATE_HEAD * scale), _TEMPLATE_CONVS)


@dataclass(frozen=True)
class WholeSpace:
    """Step 2 (inclusive ranges): depth and width multipliers of the template backbone, neck
    channels, head channels (both rounded down to a multiple of 8), stacked head convs, and the
    tolerance on the stage FLOPs ratios (C2..C5 over stem) relative to the template's."""

    depth_scale: tuple[float, float] = (0.5, 3.0)
    width_scale: tuple[float, float] = (0.5, 3.0)
    neck_channels: tuple[int, int] = (8, 128)
    head_channels: tuple[int, int] = (8, 256)
    head_convs: tuple[int, int] = (1, 4)
    stage_ratio_tol: float = 0.10


def _round8(x: float) -> int:
    return max(8, int(round(x / 8)) * 8)


def _floor8(x: float) -> int:
    return max(8, int(x) // 8 * 8)


def gn_groups(channels: int) -> int:
    """GroupNorm groups of a searched head: the largest of 8, 16, 32, 64 such that it and every smaller
    one divide `channels` (the official rule; channels are multiples of 8, so at least 8)."""
    groups = 8
    for g in (16, 32, 64):
        if channels % g:
            break
        groups = g
    return groups


def make_config(name: str, block: str, base_channels: int, planes, blocks, neck_channels: int,
                head_channels: int, head_convs: int, use_kps: bool = False) -> SCRFDConfig:
    """A searchable SCRFD: ResNetV1e backbone, PAFPN, shared GN head with Scale, plain 3x3 convs."""
    head = SCRFDHeadConfig(feat_channels=head_channels, stacked_convs=head_convs, norm="gn", shared=True,
                           dw_conv=False, use_scale=True, use_kps=use_kps, gn_groups=gn_groups(head_channels))
    backbone = ResNetConfig(block=block, base_channels=base_channels, planes=tuple(int(p) for p in planes),
                            blocks=tuple(int(b) for b in blocks))
    return SCRFDConfig(name, backbone, PAFPNConfig(neck_channels), head)


def check_config(cfg: SCRFDConfig) -> list[str]:
    """The space's structural constraints that `cfg` violates (empty when it is a valid member)."""
    bb, head = cfg.backbone, cfg.head
    problems = []
    if not isinstance(bb, ResNetConfig):
        return ["backbone is not a ResNet"]
    widths = (bb.base_channels, *bb.planes, cfg.neck.out_channels, head.feat_channels)
    if any(w < 8 or w % 8 for w in widths):
        problems.append(f"widths must be multiples of 8 (>= 8): {widths}")
    if any(b > a for a, b in zip(bb.planes[1:], bb.planes)):
        problems.append(f"stage widths decrease: {bb.planes}")
    if min(bb.blocks) < 1:
        problems.append(f"a stage has no block: {bb.blocks}")
    if head.stacked_convs < 1:
        problems.append("the head has no conv")
    if not (head.norm == "gn" and head.shared and head.use_scale and not head.dw_conv):
        problems.append("head must be shared GroupNorm with Scale and plain convs")
    if head.gn_groups != gn_groups(head.feat_channels):
        problems.append(f"GN groups {head.gn_groups}, the rule gives {gn_groups(head.feat_channels)} "
                        f"for {head.feat_channels} channels")
    return problems


def sample_backbone(rng: np.random.Generator, space: BackboneSpace, fixed: FixedNeckHead, name: str,
                    use_kps: bool = False) -> SCRFDConfig:
    """One step-1 draw (not yet budget-checked)."""
    block = space.blocks[int(rng.integers(len(space.blocks)))]
    base = _floor8(int(rng.integers(space.base_channels[0], space.base_channels[1] + 1)))
    blocks = rng.integers(space.stage_blocks[0], space.stage_blocks[1] + 1, size=4)
    planes = [base]
    for growth in rng.uniform(*space.width_growth, size=3):
        planes.append(_floor8(planes[-1] * growth))
    return make_config(name, block, base, planes, blocks, fixed.neck_channels, fixed.head_channels,
                       fixed.head_convs, use_kps)


def scale_backbones(template: ResNetConfig, depth: np.ndarray, width: np.ndarray
                    ) -> tuple[list[ResNetConfig], np.ndarray]:
    """Step 2's backbones for N (depth, width) multipliers: block counts x depth (rounded, >= 1),
    stem and stage widths x width (rounded, then down to a multiple of 8, >= 8).

    Returns the distinct backbones and, per draw, the index of its backbone (draws of millions
    yield few distinct backbones, so each is built and checked once).
    """
    blocks = np.maximum(1, np.round(np.outer(depth, template.blocks)).astype(np.int64))
    widths = np.round(np.outer(width, (template.base_channels, *template.planes))).astype(np.int64)
    widths = np.maximum(8, widths // 8 * 8)
    rows, inverse = np.unique(np.concatenate([blocks, widths], axis=1), axis=0, return_inverse=True)
    built = [ResNetConfig(block=template.block, base_channels=int(r[4]), planes=tuple(int(v) for v in r[5:]),
                          blocks=tuple(int(v) for v in r[:4])) for r in rows]
    return built, inverse.ravel()


def sample_neck_head(rng: np.random.Generator, space: WholeSpace, backbone: ResNetConfig, name: str,
                     use_kps: bool = False) -> SCRFDConfig:
    """The neck/head half of a step-2 draw, completing `backbone` into a config."""
    neck = _floor8(int(rng.integers(space.neck_channels[0], space.neck_channels[1] + 1)))
    head = _floor8(int(rng.integers(space.head_channels[0], space.head_channels[1] + 1)))
    convs = int(rng.integers(space.head_convs[0], space.head_convs[1] + 1))
    return make_config(name, backbone.block, backbone.base_channels, backbone.planes, backbone.blocks, neck, head,
                       convs, use_kps)
