"""Budgeted sampling: draw from the search space, keep configs within +-eps of a FLOPs target at 640x480.

    report = sample_candidates(step=1, gflops=0.5, num=16, seed=0)
    report.acceptance_rate, report.candidates[0].config, report.candidates[0].flops.shares()
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import ClassVar, Iterator

import numpy as np

from ..errors import LeanfaceError
from ..models import ResNetConfig, SCRFDConfig, config_from_dict
from .budget import ComponentFlops, analytic_flops, measured_flops, stage_ratios
from .space import BackboneSpace, FixedNeckHead, WholeSpace, sample_backbone, sample_neck_head, scale_backbones


@dataclass(frozen=True)
class Candidate:
    """An accepted config with its FLOPs per component at 640x480 (equal to `count_flops`).
    reference: a zoo model trained under the same proxy for comparison, not a sampled candidate
    (the analysis reports it but leaves it out of the bootstrap)."""

    index: int
    config: SCRFDConfig
    flops: ComponentFlops
    reference: bool = False
    # How from_dict reads the two typed parts back (the embedder search's subclass swaps both).
    flops_type: ClassVar[type] = ComponentFlops
    config_from_dict: ClassVar = staticmethod(config_from_dict)

    def to_dict(self) -> dict:
        return {"index": self.index, "name": self.config.name, "gflops": round(self.flops.gflops, 6),
                "flops": self.flops.as_dict(), "shares": {k: round(v, 6) for k, v in self.flops.shares().items()},
                "model": self.config.to_dict(), **({"reference": True} if self.reference else {})}

    @classmethod
    def from_dict(cls, d: dict) -> "Candidate":
        return cls(int(d["index"]), cls.config_from_dict(d["model"]), cls.flops_type(**d["flops"]),
                   bool(d.get("reference", False)))


@dataclass(frozen=True)
class SampleReport:
    """draws: configs drawn; over/under: rejected for FLOPs; off_ratio: rejected by step 2's stage-ratio
    constraint; duplicates: accepted twice (kept once)."""

    step: int
    target_gflops: float
    eps: float
    seed: int
    candidates: tuple[Candidate, ...]
    draws: int
    over: int
    under: int
    off_ratio: int
    duplicates: int
    template: SCRFDConfig | None = None
    fixed: FixedNeckHead | None = None
    template_ratios: tuple[float, ...] | None = field(default=None)

    @property
    def acceptance_rate(self) -> float:
        return len(self.candidates) / max(self.draws, 1)

    def summary(self) -> dict:
        return {"step": self.step, "target_gflops": self.target_gflops, "eps": self.eps, "seed": self.seed,
                "accepted": len(self.candidates), "draws": self.draws,
                "acceptance_rate": self.acceptance_rate, "rejected_over_budget": self.over,
                "rejected_under_budget": self.under, "rejected_stage_ratios": self.off_ratio,
                "duplicates": self.duplicates,
                "fixed_neck_head": None if self.fixed is None else vars(self.fixed),
                "template": None if self.template is None else self.template.to_dict(),
                "template_stage_ratios": None if self.template_ratios is None else list(self.template_ratios)}

    def format(self) -> str:
        lines = [f"step {self.step}: {len(self.candidates)} configs within +-{self.eps:.0%} of "
                 f"{self.target_gflops} GFLOPs (640x480) from {self.draws} draws "
                 f"(acceptance {self.acceptance_rate:.3%}; {self.over} over, {self.under} under budget, "
                 f"{self.off_ratio} off the template's stage ratios, {self.duplicates} duplicates)",
                 f"{'name':>16s} {'GF':>6s}  " + " ".join(f"{k:>6s}" for k in ComponentFlops.__dataclass_fields__)
                 + "   (% of FLOPs)"]
        for c in self.candidates:
            shares = " ".join(f"{100 * v:6.1f}" for v in c.flops.shares().values())
            lines.append(f"{c.config.name:>16s} {c.flops.gflops:6.3f}  {shares}")
        return "\n".join(lines)


def _key(cfg: SCRFDConfig) -> str:
    d = cfg.to_dict()
    d.pop("name")
    return json.dumps(d, sort_keys=True)


_BATCH = 4096  # step-2 backbone draws per vectorised batch


def _step1_draws(rng, space: BackboneSpace, fixed: FixedNeckHead, use_kps: bool) -> Iterator:
    while True:
        yield sample_backbone(rng, space, fixed, "", use_kps)


def _step2_draws(rng, space: WholeSpace, template: SCRFDConfig, use_kps: bool, ratio_ok) -> Iterator:
    """Yields a config per draw, or None for a backbone off the template's stage ratios."""
    while True:
        depth = rng.uniform(*space.depth_scale, size=_BATCH)
        width = rng.uniform(*space.width_scale, size=_BATCH)
        backbones, which = scale_backbones(template.backbone, depth, width)
        ok = [ratio_ok(b) for b in backbones]
        for i in which.tolist():
            yield sample_neck_head(rng, space, backbones[i], "", use_kps) if ok[i] else None


@dataclass
class BudgetTally:
    """What a budgeted draw loop saw: draws made, turned away over / under the budget, off_ratio (a draw of
    None: the sampler's own constraint failed), duplicates (kept once)."""

    draws: int = 0
    over: int = 0
    under: int = 0
    off_ratio: int = 0
    duplicates: int = 0


PROBE_DRAWS = 20_000  # draws after which a budget no draw came near is refused


def within_budget(draws: Iterator, num: int, gflops: float, eps: float, flops_of, key_of, accept,
                  max_draws: int, what: str) -> tuple[list, BudgetTally]:
    """The first `num` distinct draws with |flops_of(cfg).total - gflops| <= eps * gflops (in units of 1e9),
    each turned into accept(cfg, flops, index): the one rejection loop of the detector and embedder samplers."""
    if not math.isfinite(gflops) or gflops <= 0:
        raise LeanfaceError(f"the budget must be a finite number above 0, got {gflops}")
    target = gflops * 1e9
    accepted: list = []
    seen: set[str] = set()
    tally = BudgetTally()
    lo, hi = math.inf, 0.0  # the FLOPs range the draws cover
    for cfg in draws:
        if len(accepted) == num:
            break
        if tally.draws == PROBE_DRAWS and not accepted and (lo > (1 + eps) * target or hi < (1 - eps) * target):
            # A budget outside what the space can build: say so now, not after millions of draws.
            raise LeanfaceError(f"no {what}: {PROBE_DRAWS} draws span {lo / 1e9:.4g}-{hi / 1e9:.4g} G; choose a "
                                f"budget in that range")
        if tally.draws >= max_draws:
            raise LeanfaceError(f"only {len(accepted)} of {num} {what} after {tally.draws} draws ({tally.over} over, "
                                f"{tally.under} under budget, {tally.off_ratio} off-ratio); change the budget or "
                                f"the space")
        tally.draws += 1
        if cfg is None:
            tally.off_ratio += 1
            continue
        flops = flops_of(cfg)
        lo, hi = min(lo, flops.total), max(hi, flops.total)
        if flops.total > (1 + eps) * target:
            tally.over += 1
            continue
        if flops.total < (1 - eps) * target:
            tally.under += 1
            continue
        key = key_of(cfg)
        if key in seen:
            tally.duplicates += 1
            continue
        seen.add(key)
        accepted.append(accept(cfg, flops, len(accepted)))
    return accepted, tally


def sample_candidates(step: int, gflops: float, num: int, *, seed: int = 0, eps: float = 0.02,
                      template: SCRFDConfig | None = None, fixed: FixedNeckHead | None = None,
                      backbone_space: BackboneSpace = BackboneSpace(), whole_space: WholeSpace = WholeSpace(),
                      use_kps: bool = False, prefix: str = "search", max_draws: int = 5_000_000) -> SampleReport:
    """Draw until `num` distinct configs have |FLOPs - gflops| <= eps * gflops at 640x480.

    step 1: backbone only, neck/head `fixed` (default `FixedNeckHead.for_budget(gflops)`).
    step 2: around `template` (a ResNet SCRFD, e.g. step 1's best); a draw must also keep each of
    C2..C5's FLOPs over the stem's within `whole_space.stage_ratio_tol` of the template's ratio.
    Names are f"{prefix}_s{step}_{i:03d}". Deterministic for a given seed.
    """
    if step not in (1, 2):
        raise LeanfaceError(f"search step must be 1 or 2, got {step}")
    if not 0 < gflops < math.inf or num < 1 or not 0 < eps < 1:
        raise LeanfaceError(f"need gflops > 0, num >= 1 and 0 < eps < 1 (got {gflops}, {num}, {eps})")
    rng = np.random.default_rng(seed)
    template_ratios = None
    if step == 2:
        if template is None:
            raise LeanfaceError("step 2 needs a template config (step 1's best)")
        if not isinstance(template.backbone, ResNetConfig):
            raise LeanfaceError(f"template {template.name!r}: step 2 needs a ResNet backbone")
        template_ratios = stage_ratios(template.backbone)
        tol = whole_space.stage_ratio_tol

        def ratio_ok(backbone: ResNetConfig) -> bool:
            return all(abs(r - t) <= tol * t for r, t in zip(stage_ratios(backbone), template_ratios))

        draws_iter = _step2_draws(rng, whole_space, template, use_kps, ratio_ok)
    else:
        fixed = fixed or FixedNeckHead.for_budget(gflops)
        draws_iter = _step1_draws(rng, backbone_space, fixed, use_kps)

    def finish(cfg, flops, i):
        cfg = cfg.replace(name=f"{prefix}_s{step}_{i:03d}")
        if measured_flops(cfg) != flops:
            raise AssertionError(f"analytic FLOPs differ from count_flops for {cfg.to_json()}")
        return Candidate(i, cfg, flops)

    accepted, tally = within_budget(draws_iter, num, gflops, eps, analytic_flops, _key, finish, max_draws,
                                    f"configs within +-{eps:.0%} of {gflops} GFLOPs")
    return SampleReport(step, gflops, eps, seed, tuple(accepted), tally.draws, tally.over, tally.under,
                        tally.off_ratio, tally.duplicates,
                        template=template if step == 2 else None, fixed=fixed if step == 1 else None,
                        template_ratios=template_ratios)
