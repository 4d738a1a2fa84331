"""The embedder search space ("Efficient PolyFace" at our scale, RECOGNITION_FACTS 3): MobileFaceNet-type
networks whose stage depths, widths, expansions, depthwise kernel sizes and embedding size are drawn,
kept when their multiply-adds at 112x112 are within +-eps of a budget.

The paper's own space and procedure are unknown (its code holds only the final nets); this space keeps
MobileFaceNet's layout (stem 3x3/2 + depthwise 3x3, five bottleneck stages with strides 2, 2, 1, 2, 1,
1x1 conv, global depthwise conv, linear embedding) and searches how the compute is spread over it,
as SCRFD's computation redistribution does for detectors. Candidates are `MobileFaceNetConfig`s, so
they train, evaluate and export like the zoo's.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
from dataclasses import dataclass

import numpy as np

from ..errors import LeanfaceError
from ..models.flops import count_flops
from ..models import build_model
from ..models.mobilefacenet import MobileFaceNetConfig
from .budget import FlopsParts
from .sampler import Candidate, within_budget

EMBED_COMPONENTS = ("stem", "s1", "s2", "s3", "s4", "s5", "head")
_STRIDES = (2, 2, 1, 2, 1)
EMBED_INPUT_CHW = (3, 112, 112)


@dataclass(frozen=True)
class EmbedFlops(FlopsParts):
    """Multiply-adds of one 112x112 face per component: stem (3x3/2 conv + depthwise), the five
    bottleneck stages s1..s5 (at 28, 14, 14, 7, 7 px), head (1x1 conv, global depthwise conv, embedding)."""

    stem: int
    s1: int
    s2: int
    s3: int
    s4: int
    s5: int
    head: int


def analytic_embed_flops(cfg: MobileFaceNetConfig) -> EmbedFlops:
    """`embed_flops` in closed form, without building the network (the sampler draws thousands): per conv
    out_pixels x k^2 x cin/groups x cout, per BatchNorm 2 x its input elements, per PReLU its outputs."""
    if len(cfg.stages) != 5:
        raise LeanfaceError(f"{cfg.name}: the embedder search works on five-stage MobileFaceNets")
    side = cfg.input_size // 2
    c = cfg.stem_channels
    stem = side * side * (9 * 3 * c + 3 * c) + side * side * (9 * c + 3 * c)
    parts, cin = [], c
    kernels = cfg.kernels or (3,) * 5
    for (t, cout, n, s), k in zip(cfg.stages, kernels):
        total = 0
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = cin * t
            out = (side + 2 * (k // 2) - k) // stride + 1
            total += side * side * (cin * hidden + 3 * hidden)  # 1x1 expand, BN, PReLU
            total += out * out * (k * k * hidden + 3 * hidden)  # depthwise, BN, PReLU
            total += out * out * (hidden * cout + 2 * cout)  # 1x1 projection, BN
            side, cin = out, cout
        parts.append(total)
    cc, e = cfg.conv_channels, cfg.embedding_size
    head = side * side * (cin * cc + 3 * cc) + (side * side * cc + 2 * cc) + (cc * e + 2 * e)
    return EmbedFlops(stem, *parts, head)


def embed_flops(cfg: MobileFaceNetConfig) -> EmbedFlops:
    """Per-component multiply-adds of `cfg` (mmcv conventions, leanface.models.flops), at 112x112, counted
    on the built network."""
    if len(cfg.stages) != 5:
        raise LeanfaceError(f"{cfg.name}: the embedder search works on five-stage MobileFaceNets")
    report = count_flops(build_model(cfg), EMBED_INPUT_CHW)
    bounds = np.cumsum([2] + [n for _, _, n, _ in cfg.stages])  # features.<i>: 2 stem layers, then blocks
    parts = dict.fromkeys(EMBED_COMPONENTS, 0)
    for name, v in report.by_module.items():
        if name.startswith("features."):
            i = int(name.split(".")[1])
            if i < 2:
                parts["stem"] += v
            elif i < bounds[-1]:
                parts[f"s{int(np.searchsorted(bounds, i, side='right'))}"] += v
            else:
                parts["head"] += v  # the final 1x1 conv
        else:
            parts["head"] += v
    flops = EmbedFlops(**parts)
    assert flops.total == report.total
    return flops


@dataclass(frozen=True)
class EmbedderSpace:
    """Inclusive ranges / choices at a 0.25 G-MAC budget; widths scale with sqrt(budget / 0.25) (MACs grow
    with width squared). Stage widths are multiples of 8 drawn in `stage_width` and never decrease from
    stage to stage; stem = stage 1's width. depths: blocks per stage."""

    stage_blocks: tuple[tuple[int, int], ...] = ((1, 8), (1, 3), (1, 10), (1, 3), (1, 6))
    stage_width: tuple[int, int] = (24, 192)
    expansions: tuple[int, ...] = (1, 2, 3, 4, 6)
    kernels: tuple[int, ...] = (3, 5)
    conv_channels: tuple[int, int] = (256, 1024)
    embedding_sizes: tuple[int, ...] = (128,)


def _r8(x: float) -> int:
    return max(8, int(x) // 8 * 8)


def sample_embedder(rng: np.random.Generator, space: EmbedderSpace, gmacs: float = 0.25,
                    name: str = "") -> MobileFaceNetConfig:
    scale = (gmacs / 0.25) ** 0.5
    lo, hi = space.stage_width[0] * scale, space.stage_width[1] * scale
    widths, w = [], lo
    for _ in range(5):
        w = _r8(rng.uniform(max(w, lo), hi + 8))
        widths.append(w)
    stages = tuple((int(rng.choice(space.expansions)), widths[i], int(rng.integers(lo, hi + 1)), _STRIDES[i])
                   for i, (lo, hi) in enumerate(space.stage_blocks))
    return MobileFaceNetConfig(name, stem_channels=widths[0], stages=stages,
                               conv_channels=_r8(rng.uniform(space.conv_channels[0], space.conv_channels[1] + 8)),
                               embedding_size=int(rng.choice(space.embedding_sizes)),
                               kernels=tuple(int(k) for k in rng.choice(space.kernels, 5)))


class EmbedCandidate(Candidate):
    """A `Candidate` whose config is a MobileFaceNetConfig and whose FLOPs are EmbedFlops at 112x112."""

    flops_type = EmbedFlops
    config_from_dict = staticmethod(MobileFaceNetConfig.from_dict)


@dataclass(frozen=True)
class EmbedSampleReport:
    target_gflops: float
    eps: float
    seed: int
    candidates: tuple[EmbedCandidate, ...]
    draws: int
    over: int
    under: int
    duplicates: int
    step: int = 1

    @property
    def acceptance_rate(self) -> float:
        return len(self.candidates) / max(self.draws, 1)

    def summary(self) -> dict:
        return {"task": "embed", "target_gmacs_112": self.target_gflops, "eps": self.eps, "seed": self.seed,
                "accepted": len(self.candidates), "draws": self.draws, "acceptance_rate": self.acceptance_rate,
                "rejected_over_budget": self.over, "rejected_under_budget": self.under, "duplicates": self.duplicates}

    def format(self) -> str:
        lines = [f"embedders: {len(self.candidates)} configs within +-{self.eps:.0%} of {self.target_gflops} G "
                 f"multiply-adds (112x112) from {self.draws} draws (acceptance {self.acceptance_rate:.2%}; "
                 f"{self.over} over, {self.under} under budget, {self.duplicates} duplicates)",
                 f"{'name':>16s} {'GMAC':>6s}  " + " ".join(f"{k:>6s}" for k in EMBED_COMPONENTS) + "   (% of MACs)"]
        for c in self.candidates:
            lines.append(f"{c.config.name:>16s} {c.flops.gflops:6.3f}  "
                         + " ".join(f"{100 * v:6.1f}" for v in c.flops.shares().values()))
        return "\n".join(lines)


def sample_embedders(gmacs: float, num: int, *, seed: int = 0, eps: float = 0.02,
                     space: EmbedderSpace = EmbedderSpace(), prefix: str = "search",
                     max_draws: int = 200_000) -> EmbedSampleReport:
    """Draw until `num` distinct embedders have |MACs - gmacs| <= eps * gmacs at 112x112 (deterministic
    for a seed). Names are f"{prefix}_e{i:03d}"."""
    if not 0 < gmacs < float("inf") or num < 1 or not 0 < eps < 1:
        raise LeanfaceError(f"need a budget > 0, num >= 1 and 0 < eps < 1 (got {gmacs}, {num}, {eps})")
    rng = np.random.default_rng(seed)

    def finish(cfg, flops, i):
        if embed_flops(cfg) != flops:
            raise AssertionError(f"analytic multiply-adds differ from count_flops for {cfg.to_json()}")
        return EmbedCandidate(i, dataclasses.replace(cfg, name=f"{prefix}_e{i:03d}"), flops)

    def key(cfg):
        return json.dumps({k: v for k, v in cfg.to_dict().items() if k != "name"}, sort_keys=True)

    draws = (sample_embedder(rng, space, gmacs) for _ in itertools.count())
    accepted, tally = within_budget(draws, num, gmacs, eps, analytic_embed_flops, key, finish, max_draws,
                                    f"embedders within +-{eps:.0%} of {gmacs} G MACs")
    return EmbedSampleReport(gmacs, eps, seed, tuple(accepted), tally.draws, tally.over, tally.under,
                             tally.duplicates)


def scale_to_budget(base: MobileFaceNetConfig, gmacs: float, eps: float = 0.02, name: str | None = None,
                    depths: tuple[float, ...] = (1.0, 1.5, 0.67, 2.0, 0.5)) -> MobileFaceNetConfig:
    """`base` scaled to `gmacs` G multiply-adds at 112x112 (within eps): every width times a (multiples of
    8), repeated stages' depth times d, the first d of `depths` (width-only first) for which some a lands
    in the window. How the zoo's mobilefacenet_<budget> entries were made."""
    for d in depths:
        for a in np.arange(0.25, 4.0, 0.01):
            r = lambda x: max(8, int(round(x * a / 8)) * 8)  # noqa: E731
            stages = tuple((t, r(c), max(1, round(n * d)) if n > 1 else n, s) for t, c, n, s in base.stages)
            cfg = dataclasses.replace(base, name=name or f"{base.name}_{gmacs}g", stem_channels=r(base.stem_channels),
                                      stages=stages, conv_channels=r(base.conv_channels))
            g = analytic_embed_flops(cfg).gflops
            if abs(g / gmacs - 1) <= eps:
                return cfg
            if g > gmacs * (1 + eps):
                break
    raise LeanfaceError(f"no width/depth scaling of {base.name} lands within +-{eps:.0%} of {gmacs} G MACs")
