"""EResFD and EXTD train through `leanface.train.train` with their own loss (S3FD matching), and what they
learn is found by the Detector in eval mode: the overfit check of tests/train/test_loop.py."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from leanface.cli import main
from leanface.data import AugmentConfig, FaceDataset
from leanface.errors import LeanfaceError
from leanface.infer import Detector
from leanface.models import create_model, get_config, save_checkpoint
from leanface.models.importers import import_weights
from leanface.train import TrainConfig, box_iou, losses, train

from ..conftest import SHARED, easy_images, need, tiny_wider_val


def _best_ious(weights, images, size: int) -> np.ndarray:
    """Per annotated face: the best IoU of a detection (score > 0.3), at the training size letterboxed."""
    det = Detector(weights=weights, size=size, letterbox=True, score_thr=0.3, nms_thr=0.3)
    best = []
    for im in images:
        iou = box_iou(torch.from_numpy(im.boxes), torch.from_numpy(det(str(im.path)).boxes))
        best += iou.max(1).values.tolist() if iou.numel() else [0.0] * len(im)
    return np.asarray(best)


def test_eresfd_overfits_real_images(wider_train, tmp_path):
    torch.set_num_threads(1)
    size = 256
    images = easy_images(wider_train, 4, size)
    cfg = TrainConfig(procs=1, epochs=90, batch_size=4, lr=0.01, warmup_iters=10, lr_steps=(1000,),
                      augment=AugmentConfig(img_size=size, enabled=False), workers=0, out_dir=str(tmp_path / "run"),
                      ckpt_interval=1000)
    result = train(cfg, "eresfd", images, progress=False)
    losses = [float(r["loss"]) for r in result.history]
    assert np.mean(losses[-5:]) < 0.15 * losses[0], losses
    assert all(float(r["kps"]) == 0 for r in result.history)  # no landmark head
    assert create_model(None, weights=result.weights).cfg == get_config("eresfd")
    best = _best_ious(result.weights, images, size)
    assert np.mean(best >= 0.5) >= 0.75, best
    assert np.mean(best) >= 0.6, best


@pytest.mark.parametrize("name", ["extd_32", "extd_48", "extd_64"])
def test_extd_fine_tuning_improves_detection(wider_train, tmp_path, name):
    """EXTD's reused blocks share BatchNorms across six scales, so training with batch statistics breaks
    eval mode (see leanface.models.extd); fine-tuning the official weights with frozen statistics must
    keep what they detect and learn the faces they miss."""
    torch.set_num_threads(1)
    cfg, state = import_weights(need(SHARED / "models" / "extd" / f"EXTD_{name[5:]}.pth"))
    save_checkpoint(tmp_path / "official.pt", cfg, state)
    size = 256
    images = easy_images(wider_train, 2, size)
    before = _best_ious(tmp_path / "official.pt", images, size)
    tcfg = TrainConfig(procs=1, epochs=10, batch_size=2, lr=1e-3, warmup_iters=1, lr_steps=(1000,),
                       augment=AugmentConfig(img_size=size, enabled=False), freeze_bn_after=0, workers=0,
                       out_dir=str(tmp_path / "run"), ckpt_interval=1000)
    result = train(tcfg, name, images, weights=tmp_path / "official.pt", progress=False)
    losses = [float(r["loss"]) for r in result.history]
    assert np.mean(losses[-2:]) < 0.6 * losses[0], losses
    after = _best_ious(result.weights, images, size)
    assert np.mean(before >= 0.5) < 1.0, before  # the official model misses faces here: room to learn
    assert np.mean(after >= 0.5) > np.mean(before >= 0.5), (before, after)
    assert np.mean(after >= 0.5) >= 0.8 and np.mean(after) >= 0.6, after
    # Frozen statistics: the fine-tuned BatchNorms still hold the official running statistics.
    trained = torch.load(result.weights, weights_only=True)["state_dict"]
    for key, value in state.items():
        if key.endswith(("running_mean", "running_var")):
            torch.testing.assert_close(trained[key], value, rtol=0, atol=0)


def test_dataset_normalises_with_the_model_statistics(wider_train):
    aug = AugmentConfig(img_size=96, enabled=False)
    scrfd = FaceDataset(wider_train[:1], aug)[0]["image"]
    ssd = get_config("eresfd")
    sample = FaceDataset(wider_train[:1], aug, mean=ssd.mean, std=ssd.std)[0]["image"]
    # Both invert to the same RGB pixels.
    torch.testing.assert_close(sample * torch.tensor(ssd.std).view(3, 1, 1) + torch.tensor(ssd.mean).view(3, 1, 1),
                               scrfd * 128 + 127.5, rtol=0, atol=1e-3)


def test_cli_train_eval_resume_eresfd(wider_train, tmp_path, capsys):
    # A WIDER root with two validation images (symlinks): periodic and `leanface eval` evaluation in seconds.
    val, event = tiny_wider_val(tmp_path)
    ann = tmp_path / "faces.jsonl"
    ann.write_text("\n".join(json.dumps({"image": str(im.path), "faces": [{"box": b.tolist()} for b in im.boxes]})
                             for im in wider_train[:2]))
    out = tmp_path / "run"
    args = ["train", "--model", "eresfd", "--data", str(ann), "--val-data", str(val), "--out-dir", str(out),
            "--batch-size", "2", "--img-size", "64", "--workers", "0", "--eval-interval", "2", "--quiet"]
    assert main(args + ["--epochs", "1"]) == 0
    assert main(args + ["--epochs", "2", "--resume"]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-2])
    assert metrics["epoch"] == 2 and all(0.0 <= metrics[s] <= 1.0 for s in ("easy", "medium", "hard"))
    assert main(["eval", "--data", str(val), "--weights", str(out / "model.pt"), "--size", "160",
                 "--output", str(tmp_path / "eval"), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["model"] == "eresfd", record


def test_family_without_a_loss_is_a_one_line_error(monkeypatch, tmp_path, capsys):
    monkeypatch.delitem(losses._LOSSES, "extd")
    (tmp_path / "data").mkdir()
    assert main(["train", "--model", "extd_32", "--data", str(tmp_path / "data"), "--out-dir",
                 str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'extd' has no training loss" in err[0], err
    assert not (tmp_path / "run").exists()


def test_fine_tuning_weights_must_be_of_the_trained_model(wider_train, tmp_path):
    cfg = get_config("eresfd")
    save_checkpoint(tmp_path / "eresfd.pt", cfg, create_model(cfg).state_dict())
    tcfg = TrainConfig(procs=1, epochs=1, batch_size=1, augment=AugmentConfig(img_size=64), workers=0,
                       out_dir=str(tmp_path / "run"))
    with pytest.raises(LeanfaceError, match="eresfd.pt: weights of model 'eresfd'.*'extd_32'"):
        train(tcfg, "extd_32", wider_train[:1], weights=tmp_path / "eresfd.pt", progress=False)
    with pytest.raises(LeanfaceError, match="weights file not found"):
        train(tcfg, "eresfd", wider_train[:1], weights=tmp_path / "missing.pt", progress=False)


def test_extd_learns_from_scratch_in_eval_mode_only_with_frozen_bn_statistics(wider_train, tmp_path):
    """EXTD's BatchNorms are shared across six scales (see leanface.models.extd): trained with batch
    statistics it overfits in train mode yet finds nothing in eval mode; with frozen statistics, as the
    official recipe effectively runs (its per-epoch val() leaves the net in eval mode), what it learns is
    found in eval mode. float32 NCHW: the recipe, not the fast path, is under test."""
    torch.set_num_threads(1)
    size = 256
    images = easy_images(wider_train, 4, size)
    found, ratio = {}, {}
    for frozen in (0, None):
        cfg = TrainConfig(procs=1, amp=False, channels_last=False, epochs=120, batch_size=4, lr=0.01,
                          warmup_iters=10, lr_steps=(1000,), augment=AugmentConfig(img_size=size, enabled=False),
                          freeze_bn_after=frozen,
                          workers=0, out_dir=str(tmp_path / f"run{frozen}"), ckpt_interval=1000)
        result = train(cfg, "extd_32", images, progress=False)
        losses = [float(r["loss"]) for r in result.history]
        ratio[frozen] = np.mean(losses[-5:]) / losses[0]
        found[frozen] = np.mean(_best_ious(result.weights, images, size) >= 0.5)
    assert ratio[0] < 0.7 and ratio[None] < 0.1, ratio  # both learn the training batches
    assert found[None] <= 0.2 and found[0] >= found[None] + 0.4, found
