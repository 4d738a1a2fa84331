"""`leanface search analyze RUN`: where the best models put their compute, and the best model as a config.

For each component (detectors: stem, C2-C5, neck, head at 640x480; embedders: stem, stages s1-s5,
head at 112x112) the statistic is its share of the model's FLOPs and the score the search's objective
(hard-set AP; dev-split verification accuracy for embedders); `bootstrap_best` gives the 95% interval and median of the
share of the best model. Only trials that trained all their epochs count (ASHA-stopped or failed
ones are listed, not used); reference trials (zoo models under the same proxy) are reported beside
the best, not bootstrapped. Outputs in RUN/analysis/: summary.json, bootstrap.png and
best_model.json (the best trial's config, loadable by name: `--model RUN/analysis/best_model.json`).
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import LeanfaceError
from ..files import atomic_write, save_figure
from ..models.config import SCRFDConfig
from .budget import COMPONENTS
from .bootstrap import BootstrapResult, bootstrap_best
from .driver import TrialRecord, collect_trials, load_search, metric_of, search_space

ANALYSIS_DIR = "analysis"
SUMMARY_NAME = "summary.json"
PLOT_NAME = "bootstrap.png"
BEST_NAME = "best_model.json"
_LABELS = {"stem": "stem", "c2": "C2 (layer1)", "c3": "C3 (layer2)", "c4": "C4 (layer3)", "c5": "C5 (layer4)",
           "neck": "neck (PAFPN)", "head": "head", "s1": "s1 (28 px)", "s2": "s2 (14 px)", "s3": "s3 (14 px)",
           "s4": "s4 (7 px)", "s5": "s5 (7 px)"}


@dataclass(frozen=True)
class SearchAnalysis:
    """ranges: component -> bootstrap of the best model's FLOPs share. best: the highest hard-AP sampled
    trial. references: the reference trials (zoo models under the same proxy)."""

    run_dir: Path
    records: tuple[TrialRecord, ...]
    ranges: dict[str, BootstrapResult]
    best: TrialRecord
    best_config: SCRFDConfig
    files: tuple[Path, ...]
    metric: str = "hard"
    components: tuple[str, ...] = COMPONENTS

    @property
    def references(self) -> tuple[TrialRecord, ...]:
        return tuple(r for r in self.records if r.reference)

    def format(self) -> str:
        sampled = [r for r in self.records if not r.reference]
        counts = _status_counts(sampled)
        scores = sorted((r.score for r in sampled if r.status == "complete"), reverse=True)
        lines = [f"{self.run_dir}: {len(sampled)} sampled trials ({', '.join(f'{n} {s}' for s, n in counts.items())})",
                 f"best: {self.best.candidate.config.name}  {_aps(self.best)}  "
                 f"{self.best.candidate.flops.gflops:.3f} GFLOPs"]
        for r in self.references:
            if r.status != "complete":
                lines.append(f"reference {r.candidate.config.name}: {r.status}")
                continue
            rank = 1 + sum(s > r.score for s in scores)
            lines.append(f"reference {r.candidate.config.name}: {_aps(r)}  {r.candidate.flops.gflops:.3f} GFLOPs  "
                         f"(would rank {rank} of {len(scores) + 1})")
        lines.append(f"{'component':>14s}  {'best':>6s}  {'median':>6s}  {'95% interval':>15s}   (% of FLOPs)")
        shares = self.best.candidate.flops.shares()
        for c in self.components:
            r = self.ranges[c]
            lines.append(f"{_LABELS[c]:>14s}  {100 * shares[c]:6.1f}  {100 * r.median:6.1f}  "
                         f"{100 * r.low:6.1f} - {100 * r.high:5.1f}")
        lines += [f"wrote {p}" for p in self.files]
        return "\n".join(lines)


def analyze_run(run_dir: str | os.PathLike, *, n_boot: int = 10_000, fraction: float = 0.25, seed: int = 0,
                name: str | None = None) -> SearchAnalysis:
    """Bootstrap the completed trials of a search run and write RUN/analysis/{summary.json, bootstrap.png,
    best_model.json}. name: the exported config's name (default "<run folder>_best")."""
    run = Path(run_dir)
    settings, sampler, _ = load_search(run)
    records = collect_trials(run)
    done = [r for r in records if r.status == "complete" and not r.reference]
    if len(done) < 2:
        raise LeanfaceError(f"{run}: {len(done)} completed trials; the bootstrap needs at least 2")
    metric = metric_of(settings)
    space = search_space(settings.task)
    components = space.components
    scores = np.array([r.score for r in done])
    shares = {c: np.array([r.candidate.flops.shares()[c] for r in done]) for c in components}
    ranges = {c: bootstrap_best(shares[c], scores, n_boot=n_boot, fraction=fraction, seed=seed) for c in components}
    best = done[int(np.argmax(scores))]
    best_config = dataclasses.replace(best.candidate.config, name=name or f"{run.resolve().name}_best")

    out = run / ANALYSIS_DIR
    with atomic_write(out / BEST_NAME) as f:
        f.write(best_config.to_json() + "\n")
    summary = {
        "run": str(run), "step": settings.step, "target_gflops": settings.gflops, "task": settings.task, "objective": space.objective,
        **space.notes(settings),
        "bootstrap": {"n_boot": n_boot, "fraction": fraction, "seed": seed, "statistic": "share of total FLOPs"},
        "trials": _status_counts([r for r in records if not r.reference]),
        "ranges": {c: {**ranges[c].to_dict(), "best_model": best.candidate.flops.shares()[c]} for c in components},
        "best": {"index": best.candidate.index, "name": best.candidate.config.name, **best.metrics,
                 "gflops": best.candidate.flops.gflops, "exported_as": best_config.name,
                 "config_file": str(out / BEST_NAME)},
        "records": [{"index": r.candidate.index, "name": r.candidate.config.name, "status": r.status,
                     **r.metrics, "gflops": r.candidate.flops.gflops,
                     "shares": r.candidate.flops.shares(), **({"error": r.error} if r.error else {}),
                     **({"reference": True} if r.reference else {})}
                    for r in records],
        "sampler": {k: v for k, v in sampler.items() if k != "template"},
    }
    with atomic_write(out / SUMMARY_NAME) as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    budget = space.budget(settings)
    _plot(shares, scores, ranges, best.candidate.flops.shares(), out / PLOT_NAME,
          title=f"{run.resolve().name}: {budget}, {len(done)} trials", components=components,
          ylabel=space.objective)
    return SearchAnalysis(run, tuple(records), ranges, best, best_config,
                          (out / SUMMARY_NAME, out / PLOT_NAME, out / BEST_NAME), metric, components)


def _status_counts(records: list[TrialRecord]) -> dict[str, int]:
    return {s: sum(r.status == s for r in records) for s in ("complete", "stopped", "failed", "pending")}


def _aps(r: TrialRecord) -> str:
    return " ".join(f"{k} {r.metrics[k]:.4f}" for k in ("easy", "medium", "hard", "dev_acc") if k in r.metrics)


def _plot(shares: dict[str, np.ndarray], scores: np.ndarray, ranges: dict[str, BootstrapResult],
          best: dict[str, float], path: Path, title: str, components: tuple[str, ...] = COMPONENTS,
          ylabel: str = "hard AP (val subset)") -> None:
    """One panel per component (hard AP vs FLOPs share, best-model interval shaded), plus a summary bar chart."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 4, figsize=(16, 7.5))
    for ax, c in zip(axes.flat, components):
        r = ranges[c]
        x = 100 * shares[c]
        ax.axvspan(100 * r.low, 100 * r.high, color="tab:blue", alpha=0.15, label="95% interval of the best")
        ax.axvline(100 * r.median, color="tab:blue", lw=1.5, label="median")
        ax.scatter(x, scores, s=18, color="k", zorder=3, label="trials")
        ax.scatter([100 * best[c]], [scores.max()], s=60, facecolors="none", edgecolors="tab:red", zorder=4,
                   label="best trial")
        ax.set_title(_LABELS[c])
        ax.set_xlabel("% of FLOPs")
        ax.set_ylabel(ylabel)
    axes.flat[0].legend(fontsize=7, loc="lower right")
    ax = axes.flat[7]
    med = np.array([100 * ranges[c].median for c in components])
    err = np.array([[100 * (ranges[c].median - ranges[c].low), 100 * (ranges[c].high - ranges[c].median)]
                    for c in components]).T
    ax.bar(range(len(components)), med, yerr=err, capsize=3, color="tab:blue", alpha=0.7)
    ax.set_xticks(range(len(components)), [c.upper() if c[0] == "c" else c for c in components])
    ax.set_ylabel("% of FLOPs (median, 95% interval)")
    ax.set_title("where the best models put their compute")
    fig.suptitle(title)
    save_figure(fig, path)
