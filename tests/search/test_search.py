"""Search without Ray: FLOPs budget, search space, sampler, bootstrap, analysis, the real trial function."""
import json
from pathlib import Path

import numpy as np
import pytest

from leanface.cli import main
from leanface.errors import LeanfaceError
from leanface.models import config_from_dict, create_model, get_config
from leanface.models.config import ResNetConfig
from leanface.search import (COMPONENTS, FixedNeckHead, SearchSettings, TrialSettings, analytic_flops, analyze_run,
                             bootstrap_best, check_config, collect_trials, gn_groups, make_config, measured_flops,
                             prepare_search, proxy_trial, resolve_template, sample_candidates)
from leanface.search.budget import stage_ratios
from leanface.train import AugmentConfig

from ..conftest import WIDER, need


def test_stem_flops_by_hand():
    # Base 8 at 640x480: three 3x3 convs at 320x240 (3->4->4->8), each + BN (2/elem) + ReLU, then the
    # 2x2 max-pool (counts its input): 76800 px * (9*3*4 + 9*4*4 + 9*4*8 + 3*(4+4+8) + 8) = 45,772,800.
    cfg = make_config("t", "basic", 8, (8, 8, 8, 8), (1, 1, 1, 1), 8, 8, 1)
    assert analytic_flops(cfg).stem == 76800 * (108 + 144 + 288 + 48 + 8) == 45_772_800


@pytest.mark.parametrize("cfg", [
    get_config("scrfd_2.5g"), get_config("scrfd_2.5g_kps"), get_config("scrfd_10g"),
    make_config("bottleneck", "bottleneck", 16, (16, 24, 48, 64), (2, 1, 3, 1), 32, 48, 3, use_kps=True),
    make_config("odd_widths", "basic", 24, (24, 24, 56, 200), (1, 2, 1, 1), 8, 24, 1),
], ids=lambda c: c.name)
def test_analytic_flops_equals_count_flops(cfg):
    analytic, measured = analytic_flops(cfg), measured_flops(cfg)
    assert analytic == measured
    assert analytic.total == sum(measured.as_dict().values())


def test_gn_groups_official_rule():
    # Largest of 8, 16, 32, 64 reached while every step divides the channels.
    expected = {8: 8, 16: 16, 24: 8, 32: 32, 40: 8, 48: 16, 64: 64, 96: 32, 128: 64, 160: 32, 256: 64}
    assert {c: gn_groups(c) for c in expected} == expected


def test_step1_sampler_budget_and_space():
    report = sample_candidates(1, 0.5, 12, seed=3)
    fixed = FixedNeckHead.for_budget(0.5)
    assert len(report.candidates) == 12
    assert report.draws == 12 + report.over + report.under + report.duplicates
    assert report.acceptance_rate == pytest.approx(12 / report.draws)
    keys = set()
    for cand in report.candidates:
        cfg = cand.config
        measured = measured_flops(cfg)  # count_flops on the built model, not the analytic count
        assert abs(measured.total - 0.5e9) <= 0.02 * 0.5e9
        assert cand.flops == measured
        assert check_config(cfg) == []
        bb = cfg.backbone
        assert bb.block in ("basic", "bottleneck")
        assert bb.base_channels == bb.planes[0] and 8 <= bb.base_channels <= 64
        assert list(bb.planes) == sorted(bb.planes) and all(p % 8 == 0 for p in bb.planes)
        assert all(1 <= b <= 10 for b in bb.blocks)
        assert (cfg.neck.out_channels, cfg.head.feat_channels, cfg.head.stacked_convs) == \
               (fixed.neck_channels, fixed.head_channels, fixed.head_convs)
        head = cfg.head
        assert (head.norm, head.shared, head.use_scale, head.dw_conv, head.use_kps) == ("gn", True, True, False, False)
        assert config_from_dict(json.loads(cfg.to_json())) == cfg
        keys.add(json.dumps({**cfg.to_dict(), "name": ""}, sort_keys=True))
    assert len(keys) == 12  # no duplicates
    again = sample_candidates(1, 0.5, 12, seed=3)
    assert [c.config for c in again.candidates] == [c.config for c in report.candidates]


def test_step2_keeps_template_stage_ratios():
    template = get_config("scrfd_2.5g")
    report = sample_candidates(2, 2.5, 4, seed=0, template=template)
    ref = measured_flops(template).stage_ratios()
    for cand in report.candidates:
        cfg = cand.config
        measured = measured_flops(cfg)
        assert abs(measured.total - 2.5e9) <= 0.02 * 2.5e9
        assert all(abs(r - t) <= 0.1 * t for r, t in zip(measured.stage_ratios(), ref))
        assert cfg.backbone.block == template.backbone.block
        assert 8 <= cfg.neck.out_channels <= 128 and 8 <= cfg.head.feat_channels <= 256
        assert 1 <= cfg.head.stacked_convs <= 4
        assert check_config(cfg) == []
    assert report.off_ratio > 0  # the ratio constraint does reject draws
    assert stage_ratios(template.backbone) == pytest.approx(ref)


def test_sampler_rejects_bad_requests():
    with pytest.raises(LeanfaceError, match="step"):
        sample_candidates(3, 0.5, 2)
    with pytest.raises(LeanfaceError, match="template"):
        sample_candidates(2, 0.5, 2)
    with pytest.raises(LeanfaceError, match="ResNet"):
        sample_candidates(2, 0.5, 2, template=get_config("scrfd_500m"))
    with pytest.raises(LeanfaceError, match="after 500 draws"):
        sample_candidates(1, 0.001, 2, max_draws=500)  # below the smallest stem


def test_check_config_flags_violations():
    bad = make_config("bad", "basic", 16, (32, 16, 48, 48), (1, 0, 1, 1), 12, 24, 2)
    problems = " | ".join(check_config(bad))
    assert "decrease" in problems and "no block" in problems and "multiples of 8" in problems
    assert check_config(get_config("scrfd_500m")) == ["backbone is not a ResNet"]


def test_bootstrap_finds_known_optimum():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, 200)
    score = 1 - (x - 0.3) ** 2 + rng.normal(0, 0.005, x.size)
    r = bootstrap_best(x, score)
    assert r.low < 0.3 < r.high and r.high - r.low < 0.25
    assert abs(r.median - 0.3) < 0.06
    assert (r.n_pairs, r.resample_size, len(r.samples)) == (200, 50, 10_000)


def test_bootstrap_matches_resampling_probability():
    # One pair (x=1) beats seven equal ones (x=0). A resample of round(0.25 * 8) = 2 pairs picks x=1
    # exactly when it draws that pair: p = 1 - (7/8)^2.
    x = np.array([0.0] * 7 + [1.0])
    score = np.array([0.5] * 7 + [0.9])
    r = bootstrap_best(x, score, n_boot=20_000, seed=1)
    p = 1 - (7 / 8) ** 2
    assert abs(r.samples.mean() - p) < 4 * np.sqrt(p * (1 - p) / 20_000)
    assert (r.low, r.high) == (0.0, 1.0)
    with pytest.raises(ValueError):
        bootstrap_best([0.1, 0.2], [1.0])


def _fake_trial(run: Path, index: int, rows: list[dict], error: str | None = None) -> None:
    """Tune's per-trial files as the driver reads them: result.json (one JSON line per report), error.txt."""
    trial = run / "tune" / f"trial_{index:03d}"
    trial.mkdir(parents=True)
    (trial / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if error:
        (trial / "error.txt").write_text(f"Traceback ...\n{error}\n")


def test_analysis_of_a_synthetic_run(tmp_path):
    data = tmp_path / "wider"
    (data / "WIDER_val").mkdir(parents=True)
    run = tmp_path / "run"
    settings = SearchSettings(step=1, gflops=0.5, num_samples=10, trial=TrialSettings(data=str(data)).with_train(epochs=4),
                              references=("scrfd_500m",))
    report = prepare_search(run, settings)
    with pytest.raises(LeanfaceError, match="already exists"):
        prepare_search(run, settings)
    shares = np.array([c.flops.shares()["c2"] for c in report.candidates])
    target = float(np.median(shares))
    aps = 0.8 - (shares - target) ** 2
    for i in range(7):  # 0..6 complete; 7 stopped early; 8 failed; 9 never started
        _fake_trial(run, i, [{"epoch": e, "hard": aps[i] * e / 4, "easy": 0.9, "medium": 0.85} for e in (2, 4)])
    _fake_trial(run, 7, [{"epoch": 2, "hard": 0.99}])
    _fake_trial(run, 8, [], error="FloatingPointError: non-finite loss at epoch 1")
    # The reference (trial 10) beats every candidate, but is reported beside them, never chosen or bootstrapped.
    _fake_trial(run, 10, [{"epoch": 4, "hard": 0.95, "easy": 0.9, "medium": 0.9}])
    records = collect_trials(run)
    assert [r.status for r in records] == ["complete"] * 7 + ["stopped", "failed", "pending", "complete"]
    assert records[8].error == "FloatingPointError: non-finite loss at epoch 1"
    assert [r.reference for r in records] == [False] * 10 + [True]
    assert records[10].candidate.config == get_config("scrfd_500m")
    assert records[10].candidate.flops == measured_flops(get_config("scrfd_500m"))

    result = analyze_run(run, n_boot=2000)
    best = int(np.argmax(aps[:7]))
    assert result.best.candidate.index == best
    assert resolve_template(str(run)) == report.candidates[best].config
    assert "reference scrfd_500m: easy 0.9000 medium 0.9000 hard 0.9500" in result.format()
    assert "(would rank 1 of 8)" in result.format()
    summary = json.loads((run / "analysis" / "summary.json").read_text())
    assert summary["best"]["index"] == best and summary["best"]["hard"] == pytest.approx(aps[best])
    assert summary["trials"] == {"complete": 7, "stopped": 1, "failed": 1, "pending": 1}
    assert summary["records"][10]["reference"] is True
    c2 = summary["ranges"]["c2"]
    assert c2["low"] <= shares[best] <= c2["high"] and c2["n_pairs"] == 7
    assert set(summary["ranges"]) == set(COMPONENTS)
    assert (run / "analysis" / "bootstrap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The exported best config is a model name for create_model / train / eval / export.
    path = str(run / "analysis" / "best_model.json")
    cfg = get_config(path)
    assert cfg == report.candidates[best].config.replace(name="run_best")
    net = create_model(path)
    assert measured_flops(cfg).total == result.best.candidate.flops.total
    from leanface.export import export_onnx
    export_onnx(net, tmp_path / "best.onnx", sample_hw=(64, 64))
    assert (tmp_path / "best.onnx").stat().st_size > 0


def test_get_config_json_errors(tmp_path):
    with pytest.raises(LeanfaceError, match="missing.json: model config file not found"):
        get_config(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "x"')
    with pytest.raises(LeanfaceError, match="bad.json: not a leanface model config"):
        get_config(str(bad))


def test_cli_dry_run_and_errors(tmp_path, capsys):
    data = tmp_path / "wider"
    (data / "WIDER_val").mkdir(parents=True)
    assert main(["search", "run", str(tmp_path / "s"), "--gflops", "0.5", "--num-samples", "2", "--data", str(data),
                 "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "2 configs within +-2% of 0.5 GFLOPs" in out and "s_s1_001" in out
    assert not (tmp_path / "s").exists()
    assert main(["search", "run", str(tmp_path / "s"), "--gflops", "0.5", "--num-samples", "2", "--dry-run"]) == 0
    assert "s_s1_001" in capsys.readouterr().out  # sampling needs no data
    assert main(["search", "run", str(tmp_path / "s"), "--gflops", "0.5"]) == 2
    assert "needs --gflops and --data" in capsys.readouterr().err
    assert main(["search", "run", str(tmp_path / "s"), "--data", str(data)]) == 2
    assert "needs --gflops" in capsys.readouterr().err
    assert main(["search", "run", str(tmp_path / "s"), "--gflops", "0.5", "--data", str(data), "--step", "2"]) == 2
    assert "needs --template" in capsys.readouterr().err
    assert main(["search", "analyze", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "search.json: not found" in err and len(err.strip().splitlines()) == 1


def test_cli_settings_come_from_the_config_classes(tmp_path, monkeypatch):
    """Every flag of `search run` sets its SearchSettings / TrialSettings / TrainConfig field; proxy-training
    flags not given take the task's proxy, and a flag given keeps its value even where it equals the other
    task's default (an embed search may ask for 8 epochs, the detection proxy's)."""
    import leanface.search as search

    seen = []
    monkeypatch.setattr(search, "run_search", lambda run_dir, settings, **kw: seen.append(settings) or [])
    folder = tmp_path / "ids"
    folder.mkdir()
    assert main(["search", "run", str(tmp_path / "e"), "--task", "embed", "--gflops", "0.03", "--data", str(folder),
                 "--epochs", "8", "--lr", "0.02", "--asha", "--report-every", "2", "--val-images", "0",
                 "--seed", "3", "--no-amp", "--set", "margin.scale=16"]) == 0
    s = seen[-1]
    embed = search.search_space("embed").proxy
    assert (s.task, s.gflops, s.asha, s.seed) == ("embed", 0.03, True, 3)
    assert (s.trial.report_every, s.trial.val_images, s.trial.data) == (2, None, str(folder.resolve()))
    assert (s.trial.train.epochs, s.trial.train.lr, s.trial.train.amp, s.trial.train.seed) == (8, 0.02, False, 3)
    assert s.trial.train.batch_size == embed.batch_size and s.trial.train.lr_steps == embed.lr_steps
    assert s.trial.train.margin == search.PROXY_EMBED_TRAIN.margin.__class__(
        **{**search.PROXY_EMBED_TRAIN.margin.__dict__, "scale": 16.0})
    assert main(["search", "run", str(tmp_path / "d"), "--gflops", "0.5", "--data", str(tmp_path)]) == 0
    assert seen[-1].trial.train == search.PROXY_TRAIN  # no flag given: the detection proxy as it is


def test_real_trial_end_to_end(tmp_path):
    """A sampled model trains (1 epoch, 2 images, 128 px) and is scored by the WIDER protocol on 2 val images."""
    data = need(WIDER)
    cfg = sample_candidates(1, 0.3, 1, seed=0).candidates[0].config
    settings = TrialSettings(data=str(data), eval_size=160, train_images=2, val_images=2).with_train(
        epochs=1, augment=AugmentConfig(img_size=128, crop_choices=(0.5, 1.0)), batch_size=2, warmup_iters=5)
    assert TrialSettings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings
    reports = list(proxy_trial(cfg, settings, tmp_path))
    assert len(reports) == 1 and reports[0]["epoch"] == 1
    assert all(0.0 <= reports[0][s] <= 1.0 for s in ("easy", "medium", "hard"))
    assert np.isfinite(reports[0]["loss"])
    assert (tmp_path / "train" / "model.pt").is_file()
    assert len(list((tmp_path / "eval_1").glob("*/*.txt"))) == 2
    saved = json.loads((tmp_path / "train" / "config.json").read_text())
    assert config_from_dict(saved["model"]) == cfg and isinstance(cfg.backbone, ResNetConfig)
    assert saved["train"]["augment"]["crop_choices"] == [0.5, 1.0]
