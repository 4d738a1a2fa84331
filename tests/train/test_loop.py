"""The training loop: a tiny model overfits real images; resume equals an uninterrupted run; the CLI."""
from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from leanface.cli import main
from leanface.errors import LeanfaceError
from leanface.infer import Detector
from leanface.models import create_model, get_config
from leanface.train import AugmentConfig, TrainConfig, box_iou, train

from ..conftest import WIDER, easy_images, tiny_wider_val


def test_tiny_model_overfits_real_images(wider_train, tmp_path):
    torch.set_num_threads(1)
    images = easy_images(wider_train, 4, 160)
    cfg = TrainConfig(procs=1, epochs=150, batch_size=4, lr=0.01, warmup_iters=10, lr_steps=(1000,),
                      augment=AugmentConfig(img_size=160, enabled=False), workers=0, out_dir=str(tmp_path / "run"),
                      ckpt_interval=1000)
    result = train(cfg, get_config("scrfd_500m_kps"), images, progress=False)
    losses = [float(r["loss"]) for r in result.history]
    # The loss first rises (box/landmark terms are weighted by the growing scores), then falls clearly.
    assert np.mean(losses[-5:]) < 0.35 * max(losses)
    assert np.mean(losses[-5:]) < 0.6 * losses[0]
    # The saved weights load through the public paths and find the faces.
    create_model(None, weights=result.weights)
    det = Detector(weights=result.weights, size=160, score_thr=0.3, nms_thr=0.4)
    best = []
    for im in images:
        found = det(str(im.path))
        iou = box_iou(torch.from_numpy(im.boxes), torch.from_numpy(found.boxes))
        best += iou.max(1).values.tolist() if iou.numel() else [0.0] * len(im)
    assert np.mean(np.asarray(best) >= 0.5) >= 0.75, best
    assert np.mean(best) >= 0.6, best


def _state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


@pytest.mark.parametrize("model,procs", [("scrfd_500m_kps", 1), ("eresfd", 1), ("scrfd_500m_kps", 2)])
def test_resume_equals_uninterrupted_run(wider_train, tmp_path, model, procs):
    """procs=2: the default CPU path (two spawned single-thread DDP ranks, channels_last, bf16 autocast)."""
    torch.set_num_threads(1)
    images = wider_train[:2]
    # Warm-up and an lr step both fall inside the run; the straight run loads data with a worker
    # process, the interrupted one in-process (augmentation must not depend on that).
    base = dict(batch_size=2, lr=0.02, warmup_iters=2, lr_steps=(2,), augment=AugmentConfig(img_size=96), seed=3)
    straight = train(TrainConfig(procs=procs, epochs=3, workers=1, out_dir=str(tmp_path / "a"), **base), model, images,
                     progress=False)
    train(TrainConfig(procs=procs, epochs=1, workers=0, out_dir=str(tmp_path / "b"), **base), model, images, progress=False)
    interrupted = _state(tmp_path / "b" / "last.pt")
    resumed = train(TrainConfig(procs=procs, epochs=3, workers=0, out_dir=str(tmp_path / "b"), **base), model, images,
                    resume=True, progress=False)
    a, b = _state(tmp_path / "a" / "last.pt"), _state(tmp_path / "b" / "last.pt")
    assert a["epoch"] == b["epoch"] == 3
    changed = max((b["model"][k].float() - v.float()).abs().max().item() for k, v in interrupted["model"].items())
    assert changed > 1e-3  # the resumed epochs did train
    for k, v in a["model"].items():
        torch.testing.assert_close(b["model"][k], v, rtol=0, atol=1e-6)
    for pa, pb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        torch.testing.assert_close(pb["momentum_buffer"], pa["momentum_buffer"], rtol=0, atol=1e-6)
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 3
    assert straight.metrics["loss"] == pytest.approx(resumed.metrics["loss"], abs=1e-5)
    with open(tmp_path / "b" / "metrics.csv") as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1", "2", "3"]  # epochs completed, as on the bar
    saved = json.loads((tmp_path / "b" / "config.json").read_text())
    assert saved["model"]["name"] == model and saved["train"]["epochs"] == 3
    assert saved["world_size"] == procs and saved["batch_per_process"] == 2 // procs


def test_default_cpu_path_is_the_fast_one(monkeypatch):
    from leanface.train.cpu import autocast_dtype, cpu_has_bf16
    from leanface.train.processes import resolve_procs

    cpu = torch.device("cpu")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr("leanface.train.processes.available_cores", lambda: 2)
    assert resolve_procs(TrainConfig(batch_size=8), cpu) == 2  # one single-thread rank per core
    assert resolve_procs(TrainConfig(batch_size=7), cpu) == 1  # the batch must split evenly
    assert resolve_procs(TrainConfig(batch_size=8, procs=4), cpu) == 4
    with pytest.raises(LeanfaceError, match="does not split"):
        resolve_procs(TrainConfig(batch_size=6, procs=4), cpu)
    monkeypatch.setenv("WORLD_SIZE", "2")  # under torchrun the launcher made the processes
    assert resolve_procs(TrainConfig(batch_size=8), cpu) == 1
    assert TrainConfig().channels_last
    assert autocast_dtype(TrainConfig(), cpu) == (torch.bfloat16 if cpu_has_bf16() else None)
    assert autocast_dtype(TrainConfig(amp=False), cpu) is None


def test_resume_refuses_a_changed_recipe(wider_train, tmp_path):
    images = wider_train[:1]
    cfg = TrainConfig(procs=1, epochs=1, batch_size=1, augment=AugmentConfig(img_size=64), workers=0,
                      out_dir=str(tmp_path))
    train(cfg, "scrfd_500m", images, progress=False)
    assert main(["train", "--model", "scrfd_500m", "--data", str(WIDER), "--out-dir", str(tmp_path),
                 "--resume", "--img-size", "96", "--epochs", "2", "--workers", "0"]) == 2
    assert main(["train", "--model", "scrfd_500m_kps", "--data", str(WIDER), "--out-dir", str(tmp_path),
                 "--resume", "--img-size", "64", "--epochs", "2", "--workers", "0"]) == 2


def test_cli_train_one_epoch_from_a_jsonl_file(wider_train, tmp_path, capsys):
    rows = [{"image": str(im.path), "faces": [{"box": b.tolist()} for b in im.boxes]} for im in wider_train[:2]]
    ann = tmp_path / "faces.jsonl"
    ann.write_text("\n".join(json.dumps(r) for r in rows))
    out = tmp_path / "run"
    assert main(["train", "--model", "scrfd_500m", "--data", str(ann), "--out-dir", str(out), "--epochs", "1",
                 "--batch-size", "2", "--img-size", "64", "--workers", "0", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["epoch"] == 1
    for name in ("model.pt", "last.pt", "metrics.csv", "config.json", "curves.png"):
        assert (out / name).is_file(), name


def test_cli_train_user_errors(tmp_path, capsys):
    assert main(["train", "--model", "scrfd_500m", "--data", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err
    assert main(["train", "--model", "no_such_model", "--data", str(tmp_path)]) == 2
    assert main(["train", "--model", "scrfd_500m", "--data", str(tmp_path), "--img-size", "100"]) == 2
    err = capsys.readouterr().err
    assert "multiple of 32" in err and len(err.strip().splitlines()) == 2


def test_periodic_wider_evaluation(wider_train, tmp_path):
    # A WIDER root with two validation images (symlinks), so the official protocol runs in seconds.
    val, event = tiny_wider_val(tmp_path)
    cfg = TrainConfig(procs=1, epochs=2, batch_size=2, augment=AugmentConfig(img_size=64), workers=0, eval_interval=2,
                      out_dir=str(tmp_path / "run"))
    result = train(cfg, "scrfd_500m", wider_train[:2], val_data=val, progress=False)
    assert "hard" not in result.history[0]
    assert all(0.0 <= result.metrics[s] <= 1.0 for s in ("easy", "medium", "hard"))
    assert (tmp_path / "run" / "eval" / "epoch_2" / event.name).is_dir()
    with pytest.raises(LeanfaceError, match="no WIDER validation folder"):
        train(dataclasses.replace(cfg, epochs=1), "scrfd_500m", wider_train[:2], exist_ok=True, progress=False)


def test_unreadable_image_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "bad.jpg").write_text("not a jpeg")
    (tmp_path / "f.jsonl").write_text(json.dumps({"image": "bad.jpg", "faces": [{"box": [1, 1, 30, 30]}]}) + "\n")
    for workers in ("0", "1"):
        assert main(["train", "--model", "scrfd_500m", "--data", str(tmp_path / "f.jsonl"), "--out-dir",
                     str(tmp_path / "run"), "--epochs", "1", "--img-size", "64", "--workers", workers,
                     "--quiet"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "bad.jpg: not a readable image" in err[0]


def test_train_says_what_it_loaded_from_a_partial_wider_copy(wider_train, tmp_path):
    """A WIDER root with 2 of its 550 listed training images: training loads them and says 548 are absent."""
    from leanface.train import DetectionTask, TrainConfig

    root = tmp_path / "wider"
    for im in wider_train[:2]:
        target = root / "WIDER_train" / "images" / im.path.parent.name / im.path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(im.path)
    (root / "wider_face_split").symlink_to(WIDER / "wider_face_split")
    task = DetectionTask(TrainConfig(), get_config("scrfd_500m"), str(root))
    assert task.counts["images"] == 2 and task.counts["listed_images_absent"] == len(wider_train) - 2
    assert task.counts["faces"] == sum(len(im.boxes[~im.ignore]) for im in wider_train[:2])
    assert f"{len(wider_train) - 2:,} listed images are not on disk" in task.summary()


def test_cpu_convolution_reroutes_keep_the_arithmetic():
    """Strided depthwise convs run in float32 under bf16 autocast; 1x1 strided convs subsample first (their
    channels_last backward crashed PyTorch 2.13 on an AMD EPYC): same outputs and gradients as the plain
    float32 layers."""
    from leanface.models import build_model, get_config
    from leanface.train.cpu import reroute_cpu_convolutions

    net = build_model(get_config("scrfd_500m_kps"))
    keys = list(net.state_dict())
    strided = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.groups == m.in_channels > 1
               and m.stride != (1, 1)]
    assert reroute_cpu_convolutions(net, bf16=True, channels_last=True)["depthwise_float32"] == len(strided) == 4
    assert list(net.state_dict()) == keys
    conv, x = strided[0], torch.randn(2, strided[0].in_channels, 16, 16)
    plain = torch.nn.Conv2d(conv.in_channels, conv.out_channels, 3, 2, 1, groups=conv.groups, bias=False)
    plain.load_state_dict(conv.state_dict())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, y_bf16 = conv(x.bfloat16()), plain(x)
    assert y.dtype == torch.float32 and y_bf16.dtype == torch.bfloat16
    torch.testing.assert_close(y, plain(x.bfloat16().float()))  # exactly the float32 layer on that input

    q = build_model(get_config("qualitynet")).to(memory_format=torch.channels_last)
    ref = build_model(get_config("qualitynet"))
    ref.load_state_dict(q.state_dict())
    assert reroute_cpu_convolutions(q, bf16=False, channels_last=True) == {"depthwise_float32": 0, "pointwise_subsampled": 4}
    q.eval(), ref.eval()  # running statistics: the output is linear in each conv's weights
    x, r = torch.randn(64, 3, 112, 112), torch.randn(64)
    (q(x.contiguous(memory_format=torch.channels_last)).flatten() @ r).backward()  # crashed the process before
    (ref(x).flatten() @ r).backward()
    torch.testing.assert_close(q.features[3].shortcut[0].weight.grad, ref.features[3].shortcut[0].weight.grad,
                               rtol=1e-4, atol=1e-4)


def test_epochs_of_n_samples_cover_every_sample_once_per_pass_split_over_ranks():
    from leanface.train.config import check as _check
    from leanface.train.loop import _SliceKeys

    n, per_epoch, world = 10, 4, 2
    seen = []  # the stream in position order; a pass of 10 ends inside epoch 2
    for epoch in range(5):  # 20 positions: two whole passes over the 10 samples
        stream = [None] * per_epoch
        for rank in range(world):
            sampler = _SliceKeys(n, per_epoch, world, rank, seed=3)
            sampler.set_epoch(epoch)
            mine = list(sampler)
            assert len(mine) == len(sampler) == per_epoch // world and all(e == epoch for e, _ in mine)
            stream[rank::world] = [i for _, i in mine]
        if epoch * per_epoch // n == ((epoch + 1) * per_epoch - 1) // n:  # inside one pass
            assert len(set(stream)) == per_epoch  # the ranks share no sample
        seen += stream
    assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:]) == list(range(10))
    assert seen[:10] != seen[10:]  # each pass is shuffled anew
    with pytest.raises(LeanfaceError, match="multiple of batch_size"):
        _check(TrainConfig(epoch_samples=10, batch_size=4))
