"""The search driver: sample candidates within the budget, run one Ray Tune trial per candidate.

    settings = SearchSettings(gflops=0.5, num_samples=16, trial=TrialSettings(data="/data/widerface"))
    records = run_search("runs/search/s1", settings)               # local Ray, or address="host:6379"
    records = run_search("runs/search/s1", resume=True)            # after a kill: finished trials stay done

A run folder holds search.json (settings + sampler report), candidates.jsonl (one accepted config
per line, with its FLOPs per component) and tune/ (Tune's experiment state and one folder per
trial: result.json with every report, error.txt for a failed trial, and the trial's own outputs).
Everything the analysis needs is read from these files, without Ray.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from ..cluster import ray_init
from .. import serial, tasks
from ..errors import LeanfaceError
from ..flags import option
from ..outputs import OutputGuard
from ..files import atomic_write
from ..models.config import SCRFDConfig
from .sampler import Candidate, SampleReport
from .trial import TrialSettings

SETTINGS_NAME = "search.json"
CANDIDATES_NAME = "candidates.jsonl"
TUNE_NAME = "tune"
METRIC = "hard"  # the paper's selection criterion: hard-set AP
_KEPT = ("epoch", "easy", "medium", "hard", "dev_acc", "loss")


SEARCH_TASKS = tasks.with_part("search")


def search_space(task: str):
    """The search space of a task (`spaces.SearchSpace`), from the task table."""
    return tasks.get(task).load("search")


def metric_of(settings: "SearchSettings") -> str:
    return tasks.get(settings.task).metric


TrialFn = Callable[[SCRFDConfig, TrialSettings, Path], Iterable[dict]]


@dataclass(frozen=True)
class SearchSettings:
    """One search: its budget, candidates, trials and Ray resources; each field's help is its `search run` flag's
    (`flags.help_of(SearchSettings, name)`). The budget counts FLOPs at 640x480 for detect, multiply-adds at
    112x112 for embed; `step` is unused by embed searches.
    """

    gflops: float = option(help="FLOPs budget: G at 640x480 for detect (e.g. 0.5), G multiply-adds at 112x112 "
                           "for embed (e.g. 0.25)", flag=False)
    trial: TrialSettings = option(help="the trials: data, proxy training, evaluation", flag=False)
    step: int = option(1, "1: backbone only (neck/head fixed); 2: whole network around --template", choices=(1, 2))
    num_samples: int = option(16, "candidates = trials")
    seed: int = option(0, "seed of the candidate sampler and of every trial's training")
    eps: float = option(0.02, "accepted relative FLOPs deviation")
    use_kps: bool = option(False, "heads with 5-point landmarks")
    cpus_per_trial: float = option(1.0, "CPUs of one trial (Ray resources; fractions allowed)")
    gpus_per_trial: float = option(0.0, "GPUs of one trial (Ray resources; fractions allowed)")
    max_concurrent: int = option(0, "trials at once (0: as many as the resources allow)")
    asha: bool = option(False, "stop weak trials early (ASHA) at their evaluations")
    asha_grace: int = option(1, "evaluations before ASHA may stop a trial")
    references: tuple[str, ...] = option((), "zoo models (or JSON configs) trained under the same proxy, to "
                                             "compare with", flag=False)
    task: str = option("detect", "detect: SCRFD configs (budget at 640x480, objective hard AP); embed: "
                       "MobileFaceNet-type embedders (budget in G multiply-adds at 112x112, objective dev-split "
                       "verification accuracy)", choices=SEARCH_TASKS)

    def __post_init__(self):
        if self.task not in SEARCH_TASKS:
            raise LeanfaceError(f"search task must be one of {', '.join(SEARCH_TASKS)}, got {self.task!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SearchSettings":
        # The trial settings have their own reader (records from before trials held a TrainConfig).
        return serial.from_dict(cls, {**d, "trial": TrialSettings.from_dict(d["trial"])})


@dataclass(frozen=True)
class TrialRecord:
    """What one trial left on disk. status: "complete" (trained all epochs), "stopped" (ended early by
    ASHA, or cut off by a kill before the search was resumed), "failed" (error: the message), or
    "pending" (never started). metrics: its last report; reports: how many it made."""

    candidate: Candidate
    status: str
    metrics: dict
    reports: int
    error: str | None = None
    metric: str = METRIC

    @property
    def score(self) -> float | None:
        return self.metrics.get(self.metric) if self.status == "complete" else None

    @property
    def reference(self) -> bool:
        return self.candidate.reference


def trial_dirname(index: int) -> str:
    return f"trial_{index:03d}"


def load_search(run_dir: str | os.PathLike) -> tuple[SearchSettings, dict, list[Candidate]]:
    """(settings, sampler summary, candidates) of a run folder."""
    run = Path(run_dir)
    path = run / SETTINGS_NAME
    if not path.is_file():
        raise LeanfaceError(f"{path}: not found ({run} is not a search run folder)")
    try:
        record = json.loads(path.read_text())
        settings = SearchSettings.from_dict(record["settings"])
    except (ValueError, KeyError, TypeError) as exc:
        raise LeanfaceError(f"{path}: not a leanface search record ({type(exc).__name__}: {exc})") from None
    if not (run / CANDIDATES_NAME).is_file():
        raise LeanfaceError(f"{run / CANDIDATES_NAME}: not found (the search folder is incomplete)")
    space = search_space(settings.task)
    candidates = []
    with open(run / CANDIDATES_NAME) as f:
        for line_no, line in enumerate(f, 1):
            try:
                candidates.append(space.candidate.from_dict(json.loads(line)))
            except (ValueError, KeyError, TypeError) as exc:
                raise LeanfaceError(f"{run / CANDIDATES_NAME}:{line_no}: bad candidate ({exc})") from None
    return settings, record["sampler"], candidates


def resolve_template(spec: str) -> SCRFDConfig:
    """Step 2's template: a step-1 run folder (its best completed trial), a JSON config file or a zoo name."""
    from ..models.registry import get_config

    if Path(spec, SETTINGS_NAME).is_file():
        done = [r for r in collect_trials(spec) if r.status == "complete" and not r.reference]
        if not done:
            raise LeanfaceError(f"{spec}: no completed trial to take as the template")
        return max(done, key=lambda r: r.score).candidate.config
    return get_config(spec)


def _read_results(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            break  # a line cut short by a kill: what came before it is intact
    return rows


def collect_trials(run_dir: str | os.PathLike) -> list[TrialRecord]:
    """The state of every trial of a run, read from Tune's per-trial files."""
    run = Path(run_dir)
    settings, _, candidates = load_search(run)
    records = []
    metric = metric_of(settings)
    for cand in candidates:
        trial_dir = run / TUNE_NAME / trial_dirname(cand.index)
        rows = [r for r in _read_results(trial_dir / "result.json") if metric in r]
        last = rows[-1] if rows else {}
        metrics = {k: last[k] for k in _KEPT if k in last}
        error_file = trial_dir / "error.txt"
        if metrics.get("epoch") == settings.trial.epochs:
            status, error = "complete", None
        elif error_file.is_file():
            lines = error_file.read_text(errors="replace").strip().splitlines()
            status, error = "failed", (lines[-1] if lines else "unknown error")
        else:
            status, error = ("stopped" if rows else "pending"), None
        records.append(TrialRecord(cand, status, metrics, len(rows), error, metric))
    return records


def _run_trial(params: dict, *, candidates: list[Candidate], settings: SearchSettings, trial_fn: TrialFn) -> None:
    """Ray Tune function trainable: one candidate, one report per evaluation."""
    import torch
    from ray import tune

    torch.set_num_threads(max(1, int(settings.cpus_per_trial)))
    cand = candidates[params["index"]]
    out = Path(tune.get_context().get_trial_dir())
    for metrics in trial_fn(cand.config, settings.trial, out):
        tune.report({**metrics, "index": cand.index, "gflops": cand.flops.gflops})


def _trial_name(trial) -> str:
    return trial_dirname(trial.config["index"])


def _make_trainable(candidates: list[Candidate], settings: SearchSettings, trial_fn: TrialFn):
    from ray import tune

    trainable = tune.with_parameters(_run_trial, candidates=candidates, settings=settings, trial_fn=trial_fn)
    return tune.with_resources(trainable, {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial})


def _progress_callback(enabled: bool, metric: str = METRIC):
    from ray import tune

    class TrialProgress(tune.Callback):
        """A progress bar over trials: done / running / failed, and the best objective so far."""

        def __init__(self):
            self.enabled = enabled
            self.bar = None
            self.finished: set[str] = set()
            self.failed: set[str] = set()

        def __getstate__(self):
            # Tune pickles the run config (with its callbacks) for Tuner.restore: no open bar in it.
            return {**self.__dict__, "bar": None}

        def _show(self, trials) -> None:
            if not self.enabled:
                return
            from tqdm import tqdm

            self.finished |= {t.trial_id for t in trials if t.status == "TERMINATED"}
            self.failed |= {t.trial_id for t in trials if t.status == "ERROR"}
            if self.bar is None:
                self.bar = tqdm(total=len(trials), desc="trials", unit="trial", file=sys.stderr, dynamic_ncols=True)
            running = sum(t.status == "RUNNING" and t.trial_id not in self.finished | self.failed for t in trials)
            scores = [t.last_result[metric] for t in trials if t.last_result and metric in t.last_result]
            best = f"{max(scores):.4f}" if scores else "-"
            self.bar.n = len(self.finished) + len(self.failed)
            self.bar.set_postfix_str(f"running {running}, failed {len(self.failed)}, best {metric} {best}")

        def on_trial_start(self, iteration, trials, trial, **info):
            self._show(trials)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self._show(trials)

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.finished.add(trial.trial_id)
            self._show(trials)

        def on_trial_error(self, iteration, trials, trial, **info):
            self.failed.add(trial.trial_id)
            self._show(trials)

        def on_experiment_end(self, trials, **info):
            self._show(trials)
            if self.bar is not None:
                self.bar.close()

    return TrialProgress()


def prepare_search(run_dir: str | os.PathLike, settings: SearchSettings, template: SCRFDConfig | None = None,
                   ) -> SampleReport:
    """Sample the candidates and write search.json and candidates.jsonl into a new run folder."""
    run = Path(run_dir)
    guard = OutputGuard("search", exist_ok=True)  # an existing search is refused below, with its own hint
    for root in filter(None, settings.trial.data.split(",")):
        guard.inputs(root, what="the search data")
    guard.folder(run, "RUN_DIR")
    if (run / SETTINGS_NAME).exists():
        raise LeanfaceError(f"{run / SETTINGS_NAME}: a search already exists here; continue it with "
                            f"--resume (resume=True) or pick a new folder")
    settings, report, references = search_space(settings.task).prepare(run, settings, template)
    _write_search(run, settings, report, references)
    return report


def _write_search(run: Path, settings: SearchSettings, report, extra: list) -> None:
    """candidates.jsonl (sampled, then references) and search.json of a new run folder."""
    with atomic_write(run / CANDIDATES_NAME) as f:
        for cand in (*report.candidates, *extra):
            f.write(json.dumps(cand.to_dict()) + "\n")
    with atomic_write(run / SETTINGS_NAME) as f:
        json.dump({"settings": settings.to_dict(), "sampler": report.summary()}, f, indent=2)
        f.write("\n")


def _tune_saved_state(experiment: Path) -> bool:
    """Whether Tune saved an experiment state to resume from (its tuner.pkl comes before any state)."""
    from ray import tune

    return tune.Tuner.can_restore(str(experiment)) and any(experiment.glob("experiment_state-*.json"))


def run_search(run_dir: str | os.PathLike, settings: SearchSettings | None = None, *,
               template: SCRFDConfig | None = None, resume: bool = False, address: str | None = None,
               trial_fn: TrialFn | None = None, progress: bool = True) -> list[TrialRecord]:
    """Run (or, with resume=True, continue) a search in `run_dir` on Ray Tune; return every trial's record.

    New run: `settings` required (and `template` for step 2). Resume: settings come from the folder;
    trials that finished are kept, unfinished ones start again. address: an existing Ray cluster
    ("auto", "host:6379"); None starts Ray on this machine. trial_fn(config, trial settings, out dir)
    yields metric dicts with "epoch" and the task's objective, "hard" or "dev_acc" (default: the task's
    proxy trial, `spaces.SearchSpace.trial`).
    """
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the new console output ignores verbose=0
    try:
        from ray import tune
        from ray.tune.schedulers import ASHAScheduler
    except ImportError:
        raise LeanfaceError("the search runs on Ray Tune: pip install 'leanface[search]'") from None
    run = Path(run_dir).resolve()
    experiment = run / TUNE_NAME
    if not resume:
        if settings is None:
            raise LeanfaceError("a new search needs settings")
        prepare_search(run, settings, template)
    settings, _, candidates = load_search(run)
    trial_fn = trial_fn or search_space(settings.task).trial
    metric = metric_of(settings)
    trainable = _make_trainable(candidates, settings, trial_fn)
    # References first: the comparison exists even if the search is cut short. A resumed search never
    # re-runs a finished trial, even where Tune's own state missed it (a kill before Tune saved).
    done = {r.candidate.index for r in collect_trials(run) if r.status == "complete"} if resume else set()
    order = [c.index for c in sorted(candidates, key=lambda c: not c.reference) if c.index not in done]
    if not order:
        return collect_trials(run)
    param_space = {"index": tune.grid_search(order)}
    started = ray_init(address)
    try:
        if resume and _tune_saved_state(experiment):
            # param_space again: Tune keeps no copy of it, and when its restore fails it silently starts
            # a new experiment from this space (without it: one trial with an empty config).
            tuner = tune.Tuner.restore(str(experiment), trainable, resume_unfinished=True, resume_errored=False,
                                       param_space=param_space)
        else:  # a new search, or one stopped before Tune saved any state
            scheduler = None
            if settings.asha:
                scheduler = ASHAScheduler(time_attr="training_iteration", max_t=len(settings.trial.rungs()),
                                          grace_period=settings.asha_grace, reduction_factor=2)
            tuner = tune.Tuner(
                trainable,
                param_space=param_space,
                tune_config=tune.TuneConfig(metric=metric, mode="max", scheduler=scheduler,
                                            max_concurrent_trials=settings.max_concurrent or None,
                                            trial_name_creator=_trial_name, trial_dirname_creator=_trial_name),
                run_config=tune.RunConfig(name=TUNE_NAME, storage_path=str(run), verbose=0,
                                          sync_config=tune.SyncConfig(sync_artifacts=True),
                                          callbacks=[_progress_callback(progress, metric)]),
            )
        tuner.fit()
    finally:
        if started:
            import ray

            ray.shutdown()
    return collect_trials(run)
