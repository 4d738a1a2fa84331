"""The long runs' training states, written by earlier versions of the code, still resume: the command in each
run's README, parsed by today's CLI, gives a TrainConfig that `resume_state` accepts, and the saved weights,
optimiser, schedule and scaler load into today's modules. (Their data is staged, not in ../shared, so the
epoch itself is not run here; the bitwise resume of a whole epoch is tests/train/test_loop.py's.)"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
RUNS = ("det_kd_long", "emb_fm_long")


def _readme_command(run: str) -> list[str]:
    """argv of the `leanface train` command in training/<run>/README.md, its shell variables filled in."""
    block = re.search(r"```bash\n(.*?)```", (ROOT / "training" / run / "README.md").read_text(), re.S).group(1)
    text = block.replace("\\\n", " ")
    variables = dict(re.findall(r"^(\w+)=(\S+)", text, re.M))
    line = next(ln for ln in text.splitlines() if " leanface train " in f" {ln} ")
    for name, value in variables.items():
        line = line.replace(f"${name}", value)
    words = shlex.split(line.split("#")[0])
    return words[words.index("train"):]


@pytest.mark.parametrize("run", RUNS)
def test_a_long_run_made_before_the_redesign_resumes(run, monkeypatch):
    import leanface.train as training
    from leanface.cli import main
    from leanface.models.registry import build_model, get_config
    from leanface.train.checkpoints import resume_state
    from leanface.train.loop import WarmupStepSchedule
    from leanface.train.margin import EmbedderTrainer

    state_path = ROOT / "training" / run / "last.pt"
    calls = []

    class Result:
        metrics, weights = {}, "model.pt"

    monkeypatch.setattr(training, "train", lambda cfg, model, data, **kw: calls.append((cfg, model, kw)) or Result())
    assert main(_readme_command(run) + ["--resume"]) == 0
    cfg, model, kw = calls[0]
    assert kw["resume"] is True
    model_cfg = get_config(model)
    saved = torch.load(state_path, map_location="cpu", weights_only=False)
    net = build_model(model_cfg)
    if "head.weight" in saved["model"]:  # the embed task trains class weights beside the embedder
        classes, dim = saved["model"]["head.weight"].shape
        net = EmbedderTrainer(net, classes, dim, cfg.margin.kind)
    optimizer = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    schedule = WarmupStepSchedule(100, cfg.warmup_iters, cfg.warmup_ratio, cfg.resolved_steps())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: schedule(it))
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    epoch = resume_state(state_path, net, optimizer, scheduler, scaler, model_cfg, cfg)
    assert epoch == saved["epoch"] > 0
    first = next(iter(saved["model"]))
    assert torch.equal(net.state_dict()[first], saved["model"][first])
    assert scheduler.last_epoch == saved["scheduler"]["last_epoch"] > 0
