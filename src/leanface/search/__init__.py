"""Computation-redistribution search (SCRFD section 4.2) for detectors and embedders: budgeted sampling, Ray Tune
trials, bootstrap analysis."""
from .analysis import SearchAnalysis, analyze_run
from .bootstrap import BootstrapResult, bootstrap_best
from .budget import COMPONENTS, ComponentFlops, analytic_flops, measured_flops
from .driver import (SEARCH_TASKS, SearchSettings, TrialRecord, collect_trials, load_search, prepare_search,
                     resolve_template, run_search, search_space)
from .sampler import Candidate, SampleReport, sample_candidates
from .space import BackboneSpace, FixedNeckHead, WholeSpace, check_config, gn_groups, make_config
from .embed_space import (EMBED_COMPONENTS, EmbedCandidate, EmbedderSpace, EmbedFlops, analytic_embed_flops,
                          embed_flops, sample_embedders, scale_to_budget)
from .trial import PROXY_EMBED_TRAIN, PROXY_TRAIN, TRIAL_OWNED, TrialSettings, embed_proxy_trial, proxy_result, proxy_trial

__all__ = [
    "EMBED_COMPONENTS", "EmbedCandidate", "EmbedderSpace", "EmbedFlops", "PROXY_EMBED_TRAIN", "analytic_embed_flops",
    "embed_flops", "embed_proxy_trial", "sample_embedders", "scale_to_budget",
    "BackboneSpace", "BootstrapResult", "PROXY_TRAIN", "TRIAL_OWNED", "COMPONENTS", "Candidate", "ComponentFlops", "FixedNeckHead", "SampleReport",
    "SearchAnalysis", "SearchSettings", "TrialRecord", "TrialSettings", "WholeSpace", "analytic_flops", "analyze_run",
    "bootstrap_best", "check_config", "collect_trials", "gn_groups", "load_search", "make_config", "measured_flops",
    "prepare_search", "SEARCH_TASKS", "search_space", "proxy_result", "proxy_trial", "resolve_template", "run_search", "sample_candidates",
]
