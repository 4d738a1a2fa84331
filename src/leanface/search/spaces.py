"""What a search needs of each task, one record per task (named by the task table, `leanface.tasks`): how
candidates are drawn within the budget and checked, the candidate record, the proxy trial, the FLOPs
components the analysis splits, and the words its reports use. The driver and the analysis name no family.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import LeanfaceError
from ..models.config import SCRFDConfig
from ..models.mobilefacenet import MobileFaceNetConfig
from ..models.registry import get_config
from .budget import COMPONENTS, measured_flops
from .embed_space import EMBED_COMPONENTS, EmbedCandidate, embed_flops, sample_embedders
from .sampler import Candidate, sample_candidates
from ..train import TrainConfig
from .trial import PROXY_EMBED_TRAIN, PROXY_TRAIN, embed_proxy_trial, proxy_trial


@dataclass(frozen=True)
class SearchSpace:
    """task: the task's name. sample(settings, template, prefix) -> the sampler's report (its candidates
    within the budget). prepare(run, settings, template) -> (settings with absolute data paths, the
    sampler's report, reference candidates): checks the settings, then samples. candidate: the
    candidates.jsonl record class. trial: the proxy trial, trial(config, trial settings, out dir) -> reports;
    proxy: its training's defaults.
    components: the FLOPs parts the analysis bootstraps. objective: the metric in words. budget(settings):
    the budget in words. notes(settings): what the analysis's summary says about the proxy's scores."""

    task: str
    sample: Callable
    prepare: Callable
    candidate: type
    trial: Callable
    proxy: TrainConfig
    components: tuple[str, ...]
    objective: str
    budget: Callable
    notes: Callable


def _check_trials(settings) -> None:
    if settings.trial.epochs < 1:
        raise LeanfaceError(f"trials need epochs >= 1 (got {settings.trial.epochs})")
    if settings.trial.report_every and settings.trial.report_every > settings.trial.epochs:
        raise LeanfaceError(f"report_every ({settings.trial.report_every}) exceeds epochs ({settings.trial.epochs})")
    if settings.asha and len(settings.trial.rungs()) < 2:
        raise LeanfaceError("asha needs at least two evaluations per trial: set report_every below epochs")


def _references(settings, config_cls: type, what: str) -> list:
    """The reference models' configs (zoo names or JSON files), refused before sampling if not of the space."""
    references = [get_config(spec) for spec in settings.references]
    for spec, cfg in zip(settings.references, references):
        if not isinstance(cfg, config_cls):
            raise LeanfaceError(f"reference {spec!r} is not {what}")
    return references


def _with_data(settings, data: str):
    # Trials run in their own working folders (and on other nodes): data paths must be absolute.
    return dataclasses.replace(settings, trial=dataclasses.replace(settings.trial, data=data))


def _sample_detect(settings, template: SCRFDConfig | None, prefix: str):
    return sample_candidates(settings.step, settings.gflops, settings.num_samples, seed=settings.seed,
                             eps=settings.eps, template=template, use_kps=settings.use_kps, prefix=prefix)


def _sample_embed(settings, template, prefix: str):
    return sample_embedders(settings.gflops, settings.num_samples, seed=settings.seed, eps=settings.eps, prefix=prefix)


def _prepare_detect(run: Path, settings, template: SCRFDConfig | None):
    _check_trials(settings)
    size = settings.trial.train.augment.img_size
    if size <= 0 or size % 32:
        raise LeanfaceError(f"trials need img_size a multiple of 32 (got {size})")
    if not Path(settings.trial.data, "WIDER_val").is_dir():
        raise LeanfaceError(f"{settings.trial.data}: no WIDER_val folder (trials evaluate on WIDER val)")
    settings = _with_data(settings, str(Path(settings.trial.data).resolve()))
    references = _references(settings, SCRFDConfig, "an SCRFD model (the proxy trains SCRFD configs)")
    report = _sample_detect(settings, template, run.name)
    start = len(report.candidates)
    return settings, report, [Candidate(start + i, cfg, measured_flops(cfg), reference=True)
                              for i, cfg in enumerate(references)]


def _prepare_embed(run: Path, settings, template=None):
    _check_trials(settings)
    roots = [p for p in settings.trial.data.split(",") if p]
    missing = [p for p in roots if not Path(p).is_dir()]
    if not roots or missing:
        raise LeanfaceError(f"{', '.join(missing) or '(none)'}: identity folder not found (--data DIR[,DIR...])")
    settings = _with_data(settings, ",".join(str(Path(p).resolve()) for p in roots))
    references = _references(settings, MobileFaceNetConfig, "an embedder (the embed proxy trains MobileFaceNets)")
    report = _sample_embed(settings, template, run.name)
    start = len(report.candidates)
    return settings, report, [EmbedCandidate(start + i, cfg, embed_flops(cfg), reference=True)
                              for i, cfg in enumerate(references)]


DETECT = SearchSpace(
    "detect", _sample_detect, _prepare_detect, Candidate, proxy_trial, PROXY_TRAIN, COMPONENTS, "hard AP (val subset)",
    budget=lambda s: f"step {s.step}, {s.gflops} GFLOPs",
    notes=lambda s: {"val_images": s.trial.val_images, "subset_note": "APs of short proxy trainings on a WIDER val subset"})
EMBED = SearchSpace(
    "embed", _sample_embed, _prepare_embed, EmbedCandidate, embed_proxy_trial, PROXY_EMBED_TRAIN, EMBED_COMPONENTS, "dev verification accuracy",
    budget=lambda s: f"{s.gflops} G multiply-adds at 112x112",
    notes=lambda s: {"subset_note": "dev verification accuracy of short proxy trainings on held-back training identities"})
