"""FLOPs per component (stem, C2-C5, neck, head) of a ResNet SCRFD, measured or counted analytically.

The sampler draws thousands of candidates per accepted one, and `count_flops` builds the model and
runs a 640x480 forward (about 0.1-1 s each), so budget checks use `analytic_flops`: the same counting
rules (leanface.models.flops, mmcv conventions) written as closed-form sums. Tests check it equals
`count_flops` exactly, and the sampler re-measures every accepted config with `count_flops`.
"""
from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

from ..models.config import ResNetConfig, SCRFDConfig
from ..models.flops import FlopsReport

COMPONENTS = ("stem", "c2", "c3", "c4", "c5", "neck", "head")
INPUT_CHW = (3, 480, 640)  # the paper's budget resolution (VGA)


class FlopsParts:
    """What every per-component FLOPs record shares (a frozen dataclass of int fields, one per component)."""

    @property
    def total(self) -> int:
        return sum(self.as_dict().values())

    @property
    def gflops(self) -> float:
        return self.total / 1e9

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def shares(self) -> dict[str, float]:
        """Each component's fraction of the total FLOPs (the statistic of the paper's bootstrap)."""
        total = self.total
        return {k: v / total for k, v in self.as_dict().items()}


@dataclass(frozen=True)
class ComponentFlops(FlopsParts):
    """FLOPs of one image at 640x480 per component. stem includes the 2x2 max-pool; c2..c5 are
    backbone layer1..layer4 (strides 4..32); neck the PAFPN; head the shared tower and predictors."""

    stem: int
    c2: int
    c3: int
    c4: int
    c5: int
    neck: int
    head: int

    def stage_ratios(self) -> tuple[float, float, float, float]:
        """C2..C5 FLOPs relative to the stem: what step 2 keeps within a tolerance of the template's."""
        return (self.c2 / self.stem, self.c3 / self.stem, self.c4 / self.stem, self.c5 / self.stem)


def from_report(report: FlopsReport) -> ComponentFlops:
    """Split a `count_flops` report of an SCRFD into components."""
    parts = ComponentFlops(
        stem=report.group("backbone.stem") + report.group("backbone.maxpool"),
        **{f"c{i + 2}": report.group(f"backbone.layer{i + 1}") for i in range(4)},
        neck=report.group("neck"), head=report.group("bbox_head"))
    if parts.total != report.total:
        raise ValueError(f"components sum to {parts.total} FLOPs but the model has {report.total}: "
                         f"a module outside backbone/neck/bbox_head")
    return parts


def measured_flops(cfg: SCRFDConfig, input_chw: tuple[int, int, int] = INPUT_CHW) -> ComponentFlops:
    """Build the model and count with `count_flops` (the reference the analytic count must equal)."""
    from ..models.flops import count_flops
    from ..models.registry import build_model

    return from_report(count_flops(build_model(cfg), input_chw))


def _out(size: int, k: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - k) // stride + 1


def _conv(cin: int, cout: int, k: int, pixels: int, bias: bool = False) -> int:
    return (k * k * cin * cout + (cout if bias else 0)) * pixels


def _stem(base: int, h: int, w: int) -> tuple[int, int, int]:
    """Deep stem + max-pool FLOPs, and the (h, w) after them."""
    h, w = _out(h, 3, 2, 1), _out(w, 3, 2, 1)
    p, half = h * w, base // 2
    flops = 0
    for cin, cout in ((3, half), (half, half), (half, base)):
        flops += _conv(cin, cout, 3, p) + 3 * cout * p  # conv, BN (x2: affine), ReLU
    flops += base * p  # max-pool counts its input
    return flops, h // 2, w // 2


def _stage(bb: ResNetConfig, i: int, cin: int, h: int, w: int) -> tuple[int, int, int, int]:
    """FLOPs of backbone layer i+1, and its (out channels, h, w)."""
    planes, stride = bb.planes[i], 1 if i == 0 else 2
    cout = planes * bb.expansion
    flops = 0
    for b in range(bb.blocks[i]):
        s = stride if b == 0 else 1
        c_in = cin if b == 0 else cout
        ho, wo = _out(h, 3, s, 1), _out(w, 3, s, 1)
        pi, po = h * w, ho * wo
        if bb.block == "basic":
            # conv1 (stride) + BN + ReLU, conv2 + BN, final ReLU (the shared ReLU module counts twice).
            flops += _conv(c_in, planes, 3, po) + 3 * planes * po + _conv(planes, planes, 3, po) + 3 * cout * po
        else:
            # 1x1 at the input size, 3x3 with the stride, 1x1 expand; ReLU after each and after the add.
            flops += (_conv(c_in, planes, 1, pi) + 3 * planes * pi + _conv(planes, planes, 3, po)
                      + 3 * planes * po + _conv(planes, cout, 1, po) + 3 * cout * po)
        if b == 0 and (s != 1 or c_in != cout):
            flops += c_in * pi + _conv(c_in, cout, 1, po) + 2 * cout * po  # avg-pool, 1x1 conv, BN
        h, w = ho, wo
    return flops, cout, h, w


def analytic_flops(cfg: SCRFDConfig, input_chw: tuple[int, int, int] = INPUT_CHW) -> ComponentFlops:
    """Closed-form `count_flops` of a ResNet-backbone SCRFD (what the search samples), per component."""
    bb, head = cfg.backbone, cfg.head
    if not isinstance(bb, ResNetConfig) or head.dw_conv:
        raise ValueError("analytic_flops covers ResNet backbones with plain (not depthwise) head convs")
    stem, stages, sizes = backbone_flops(bb, input_chw)
    n = cfg.neck.out_channels
    (c3, p8), (c4, p16), (c5, p32) = sizes[1:]
    pixels = (p8, p16, p32)
    neck = sum(_conv(c, n, 1, p, bias=True) for c, p in zip((c3, c4, c5), pixels))  # laterals
    neck += sum(_conv(n, n, 3, p, bias=True) for p in pixels)  # fpn convs
    neck += 2 * sum(_conv(n, n, 3, p, bias=True) for p in pixels[1:])  # stride-2 downsample + pafpn convs
    f, a = head.feat_channels, head.num_anchors
    outs = a * (1 + 4 + (10 if head.use_kps else 0))
    per_pixel = sum(_conv(n if j == 0 else f, f, 3, 1) + 3 * f for j in range(head.stacked_convs))  # conv, norm, ReLU
    per_pixel += 9 * f * outs + outs  # cls/reg/kps predictors (with bias)
    head_flops = per_pixel * sum(pixels)
    return ComponentFlops(stem, *stages, neck=neck, head=head_flops)


@functools.lru_cache(maxsize=65536)
def backbone_flops(bb: ResNetConfig, input_chw: tuple[int, int, int] = INPUT_CHW):
    """(stem FLOPs, (C2..C5 FLOPs), ((channels, pixels) per stage)); cached: step 2 redraws few backbones."""
    stem, h, w = _stem(bb.base_channels, input_chw[1], input_chw[2])
    stages, sizes, cin = [], [], bb.base_channels
    for i in range(4):
        flops, cin, h, w = _stage(bb, i, cin, h, w)
        stages.append(flops)
        sizes.append((cin, h * w))
    return stem, tuple(stages), tuple(sizes)


def stage_ratios(bb: ResNetConfig) -> tuple[float, ...]:
    """C2..C5 FLOPs over the stem's (see ComponentFlops.stage_ratios), from the backbone alone."""
    stem, stages, _ = backbone_flops(bb)
    return tuple(s / stem for s in stages)
