"""One search trial: a short proxy training of a candidate, then the WIDER protocol on a val subset.

    for metrics in proxy_trial(cfg, TrialSettings(data="/data/widerface", epochs=8), out_dir):
        metrics["hard"]  # hard-set AP after metrics["epoch"] epochs (the search objective)

The trial yields one metrics dict per evaluation (every `report_every` epochs, and at the end), so
an early-stopping scheduler (ASHA) can end weak candidates between evaluations. `proxy_result` runs a
whole trial outside Ray (ablations, seed repeats) and keeps its final report in <out_dir>/result.json.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..data.augment import CROP_CHOICES_SCRFD
from ..errors import LeanfaceError
from ..files import atomic_write
from ..models.config import SCRFDConfig


@dataclass(frozen=True)
class TrialSettings:
    """data: WIDER-layout root (absolute; on a cluster, the same path on every node): trains on
    WIDER_train, evaluates on WIDER_val. epochs: proxy training length. img_size: training crop side
    (multiple of 32). eval_size: evaluation long side (the protocol's 640; letterboxed, score 0.02,
    NMS 0.45). train_images / val_images: use only this many images, evenly spaced over the
    sorted lists (None: all). batch_size, lr, warmup_iters: SGD recipe (lr steps at 440/640 and
    544/640 of `epochs`). report_every: evaluate every n epochs (0: only at the end). workers:
    DataLoader processes per trial. seed: training seed, the same for every candidate.
    crop_choices: sample-redistribution crop scales (CROP_CHOICES_BASELINE for the paper's [0.3, 1.0]).
    pre_nms_topk: evaluation NMSes only the k best candidates per image (a weak proxy model has
    tens of thousands above the protocol's 0.02 score threshold, which makes NMS the bottleneck).
    procs, amp, channels_last: the training path (see TrainConfig); a trial is one process by default
    because Ray already runs one trial per CPU.
    """

    data: str
    epochs: int = 8
    img_size: int = 320
    eval_size: int = 640
    train_images: int | None = None
    val_images: int | None = 100
    batch_size: int = 8
    lr: float = 0.01
    warmup_iters: int = 200
    report_every: int = 0
    workers: int = 0
    seed: int = 0
    crop_choices: tuple[float, ...] = CROP_CHOICES_SCRFD
    pre_nms_topk: int | None = 2000
    procs: int = 1
    amp: bool = True
    channels_last: bool = True

    def rungs(self) -> list[int]:
        """Epochs after which the trial evaluates and reports."""
        every = self.report_every or self.epochs
        return sorted({*range(every, self.epochs, every), self.epochs})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrialSettings":
        d = dict(d)
        if d.get("crop_choices") is None:  # records written before the field existed (null: the default)
            d.pop("crop_choices", None)
        else:
            d["crop_choices"] = tuple(d["crop_choices"])
        return cls(**d)


def _spread(items: list, n: int | None) -> list:
    """n items evenly spaced over `items` (all when n is None or too large)."""
    if n is None or n >= len(items):
        return list(items)
    if n < 1:
        raise LeanfaceError(f"need at least one image, got {n}")
    return [items[(i * len(items)) // n] for i in range(n)]


def proxy_trial(cfg: SCRFDConfig, settings: TrialSettings, out_dir: str | os.PathLike) -> Iterator[dict]:
    """Train `cfg` from scratch on the training subset and evaluate it on the val subset.

    Writes <out_dir>/train (the training run: model.pt, metrics.csv, ...) and <out_dir>/eval_<epoch>
    (WIDER submission files). Yields {"epoch", "easy", "medium", "hard", "loss"} per rung; APs are
    fractions on the val subset (not comparable with full-protocol numbers).
    """
    from ..data.readers import load_training_data
    from ..eval import WIDER_PROTOCOL, evaluate_detector, load_ground_truth, present_images
    from ..infer import Detector
    from ..train import TrainConfig, train

    out_dir = Path(out_dir)
    images = _spread(load_training_data(settings.data), settings.train_images)
    gt = load_ground_truth(settings.data)
    keys = [key for key, _ in _spread(present_images(gt, settings.data), settings.val_images)]
    gt = gt.subset(keys)
    steps = TrainConfig(epochs=settings.epochs).resolved_steps()
    for i, epochs in enumerate(settings.rungs()):
        # Each rung continues the same run (same schedule, fixed lr steps) from its last.pt.
        tcfg = TrainConfig(epochs=epochs, lr_steps=steps, batch_size=settings.batch_size, lr=settings.lr,
                           warmup_iters=settings.warmup_iters, img_size=settings.img_size, workers=settings.workers,
                           seed=settings.seed, out_dir=str(out_dir / "train"), ckpt_interval=settings.epochs,
                           crop_choices=tuple(settings.crop_choices), procs=settings.procs, amp=settings.amp,
                           channels_last=settings.channels_last)
        result = train(tcfg, cfg, images, resume=i > 0, progress=False)
        detector = Detector(weights=result.weights, **{**WIDER_PROTOCOL, "size": settings.eval_size},
                            pre_nms_topk=settings.pre_nms_topk)
        evaluation, _ = evaluate_detector(detector, settings.data, out_dir / f"eval_{epochs}", progress=False,
                                          ground_truth=gt)
        yield {"epoch": epochs, **evaluation.result.aps, "loss": float(result.metrics["loss"])}


def proxy_result(cfg: SCRFDConfig, settings: TrialSettings, out_dir: str | os.PathLike) -> dict:
    """The final report of `proxy_trial` plus "seconds" and "settings", kept in <out_dir>/result.json
    (written atomically): a finished trial is read back, not trained again."""
    path = Path(out_dir) / "result.json"
    if path.is_file():
        return json.loads(path.read_text())
    start = time.perf_counter()
    *_, last = proxy_trial(cfg, settings, out_dir)
    result = {**last, "seconds": time.perf_counter() - start, "settings": settings.to_dict()}
    with atomic_write(path) as f:
        json.dump(result, f, indent=2)
    return result
