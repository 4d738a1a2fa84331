"""The embedder search: budgeted sampling of MobileFaceNet-type configs at 112x112, the zoo's budget
family, and a real two-trial search on local Ray with the dev-split objective, then its analysis."""
from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from leanface.errors import LeanfaceError
from leanface.models import build_model, get_config
from leanface.models.flops import count_flops
from leanface.search import (EMBED_COMPONENTS, EmbedderSpace, analytic_embed_flops, embed_flops, sample_embedders,
                             scale_to_budget)

from ..conftest import SHARED, need


def test_mobilefacenet_multiply_adds_by_hand():
    # Stem: 3x3/2 conv 3->64 at 56x56 (+ BN x2 + PReLU per output) and a depthwise 3x3 at 56x56.
    stem = 56 * 56 * (27 * 64 + 3 * 64) + 56 * 56 * (9 * 64 + 3 * 64)
    flops = analytic_embed_flops(get_config("mobilefacenet"))
    assert flops.stem == stem
    assert flops == embed_flops(get_config("mobilefacenet"))
    assert flops.total == count_flops(build_model(get_config("mobilefacenet")), (3, 112, 112)).total
    assert abs(flops.gflops - 0.23) < 0.01  # the paper's ~0.22 G (it leaves out BN and PReLU)


@pytest.mark.parametrize("budget,name", [(0.1, "mobilefacenet_0_1g"), (0.25, "mobilefacenet_0_25g"),
                                         (0.5, "mobilefacenet_0_5g"), (1.0, "mobilefacenet_1g")])
def test_zoo_budget_family_is_within_two_percent(budget, name):
    cfg = get_config(name)
    assert abs(embed_flops(cfg).gflops / budget - 1) <= 0.02
    # The entries are what the scaling rule gives (so the rule, not hand-tuning, made them).
    assert dataclasses.replace(scale_to_budget(get_config("mobilefacenet"), budget), name=name) == cfg


def test_sampler_keeps_the_budget_and_the_space():
    report = sample_embedders(0.25, 6, seed=3)
    again = sample_embedders(0.25, 6, seed=3)
    assert [c.config for c in report.candidates] == [c.config for c in again.candidates]
    space = EmbedderSpace()
    for c in report.candidates:
        assert abs(c.flops.gflops / 0.25 - 1) <= 0.02
        assert c.flops == embed_flops(c.config)  # the analytic count is the built network's
        widths = [w for _, w, _, _ in c.config.stages]
        assert widths == sorted(widths) and all(w % 8 == 0 for w in widths)
        assert all(k in space.kernels for k in c.config.kernels)
        assert all(lo <= n <= hi for (_, _, n, _), (lo, hi) in zip(c.config.stages, space.stage_blocks))
        assert abs(sum(c.flops.shares().values()) - 1) < 1e-9 and set(c.flops.shares()) == set(EMBED_COMPONENTS)
    assert report.over + report.under + len(report.candidates) + report.duplicates == report.draws
    with pytest.raises(LeanfaceError, match="budget"):
        sample_embedders(0, 1)
    with pytest.raises(LeanfaceError, match="draws"):
        sample_embedders(0.25, 1, max_draws=1, eps=1e-6)


def test_real_embed_search_on_local_ray_and_its_analysis(tmp_path, monkeypatch):
    pytest.importorskip("ray.tune", reason="ray[tune] is not installed (pip install 'leanface[search]')")
    from leanface.search import PROXY_EMBED_TRAIN, SearchSettings, TrialSettings, analyze_run, run_search

    src = need(SHARED / "data" / "recog_train" / "celeba_aligned_lowres")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    people = tmp_path / "people"
    for d in sorted(p for p in src.iterdir() if p.is_dir())[:160]:
        shutil.copytree(d, people / d.name)
    from leanface.recognize.identities import load_identity_faces

    load_identity_faces(people, progress=False)  # align once here; the trials read the cache
    trial = TrialSettings(data=str(people), train=dataclasses.replace(PROXY_EMBED_TRAIN, epochs=1, lr_steps=(1,),
                                                                       warmup_iters=5, batch_size=32))
    settings = SearchSettings(step=1, gflops=0.03, num_samples=2, trial=trial, task="embed", eps=0.05)
    records = run_search(tmp_path / "run", settings, progress=False)
    assert [r.status for r in records] == ["complete", "complete"], [r.error for r in records]
    assert all(0.4 <= r.score <= 1.0 and r.metric == "dev_acc" for r in records)
    analysis = analyze_run(tmp_path / "run", n_boot=200)
    assert set(analysis.ranges) == set(EMBED_COMPONENTS)
    best = json.loads((tmp_path / "run" / "analysis" / "best_model.json").read_text())
    assert best["family"] == "mobilefacenet" and best["name"] == "run_best"
    summary = json.loads((tmp_path / "run" / "analysis" / "summary.json").read_text())
    assert summary["task"] == "embed" and summary["objective"] == "dev verification accuracy"
    assert np.isfinite(summary["best"]["dev_acc"])
    assert "WIDER" not in summary["subset_note"] and "val_images" not in summary  # no detection wording
