"""One search trial: a short proxy training of a candidate, then the WIDER protocol on a val subset.

    for metrics in proxy_trial(cfg, TrialSettings(data="/data/widerface"), out_dir):
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

from .. import serial
from ..errors import LeanfaceError
from ..files import atomic_write
from ..flags import option
from ..models.config import SCRFDConfig
from ..data.augment import AugmentConfig
from ..train import MarginLoss, TrainConfig
from ..train.config import MOVED_TO_AUGMENT


# The proxy training of a trial: short, small crops, one single-thread process (Ray runs one trial per CPU).
PROXY_TRAIN = TrainConfig(epochs=8, augment=AugmentConfig(img_size=320), warmup_iters=200, workers=0, procs=1)
# The embedders' proxy: a few epochs of ArcFace with a softer scale (s = 64 rarely converges this fast on
# small data), batch 64, one single-thread process; scored on the dev split's verification protocol.
PROXY_EMBED_TRAIN = TrainConfig(epochs=6, batch_size=64, lr=0.1, warmup_iters=100, lr_steps=(4, 5), workers=0,
                                procs=1, margin=MarginLoss(kind="arcface", scale=32.0, margin=0.3, margin_warmup=1.0))
# Fields of the TrainConfig that a trial sets itself.
TRIAL_OWNED = ("out_dir", "ckpt_interval", "eval_interval")


@dataclass(frozen=True)
class TrialSettings:
    """data: WIDER-layout root (absolute; on a cluster, the same path on every node): trains on
    WIDER_train, evaluates on WIDER_val. train: the proxy training (lr steps at 440/640 and 544/640
    of its epochs unless lr_steps is set; the same seed for every candidate). eval_size: evaluation
    long side (the family's eval preset otherwise). train_images / val_images: use only this
    many images, evenly spaced over the sorted lists (None: all). report_every: evaluate every n
    epochs (0: only at the end). pre_nms_topk: evaluation NMSes only the k best candidates per image
    (a weak proxy model has tens of thousands above the protocol's 0.02 score threshold, which makes
    NMS the bottleneck).
    """

    data: str = option(help="detect: WIDER-layout root (trains on WIDER_train, evaluates on WIDER_val); embed: "
                       "identity folders DIR[,DIR...] (dev split held back by identity)", flag=False)
    train: TrainConfig = option(PROXY_TRAIN, "the proxy training")
    eval_size: int = option(640, "evaluation long side")
    train_images: int | None = option(None, "train on this many images (default all)")
    val_images: int | None = option(100, "evaluate on this many val images (0: all)")
    report_every: int = option(0, "evaluate every N epochs (needed by --asha; 0: only at the end)")
    pre_nms_topk: int | None = option(2000, "evaluation NMSes only the k best candidates per image")

    @property
    def epochs(self) -> int:
        return self.train.epochs

    def with_train(self, **changes) -> "TrialSettings":
        """These settings with some proxy-training fields changed (e.g. seed=1)."""
        return dataclasses.replace(self, train=dataclasses.replace(self.train, **changes))

    def rungs(self) -> list[int]:
        """Epochs after which the trial evaluates and reports."""
        every = self.report_every or self.epochs
        return sorted({*range(every, self.epochs, every), self.epochs})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrialSettings":
        if "train" in d:
            return serial.from_dict(cls, d)
        d = dict(d)
        # Records written before trials held a TrainConfig: its fields were flat, and the training
        # path was float32 NCHW (the fast path did not exist yet).
        names = [f.name for f in dataclasses.fields(TrainConfig)] + list(MOVED_TO_AUGMENT)
        flat = {k: d.pop(k) for k in names if k in d}
        flat.setdefault("amp", False)
        flat.setdefault("channels_last", False)
        if flat.get("crop_choices") is None:
            flat.pop("crop_choices", None)
        return serial.from_dict(cls, {**d, "train": {**dataclasses.asdict(PROXY_TRAIN), **flat}})


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
    from ..data import load_ground_truth, present_images
    from ..eval import evaluate_detector
    from ..infer import Detector
    from ..train import train

    out_dir = Path(out_dir)
    images = _spread(load_training_data(settings.data), settings.train_images)
    gt = load_ground_truth(settings.data)
    keys = [key for key, _ in _spread(present_images(gt, settings.data), settings.val_images)]
    gt = gt.subset(keys)
    steps = settings.train.resolved_steps()
    for i, epochs in enumerate(settings.rungs()):
        # Each rung continues the same run (same schedule, fixed lr steps) from its last.pt.
        tcfg = dataclasses.replace(settings.train, epochs=epochs, lr_steps=steps, out_dir=str(out_dir / "train"),
                                   ckpt_interval=settings.epochs, eval_interval=0)
        result = train(tcfg, cfg, images, resume=i > 0, progress=False)
        detector = Detector(weights=result.weights, preset="eval", size=settings.eval_size,
                            pre_nms_topk=settings.pre_nms_topk)
        evaluation, _ = evaluate_detector(detector, settings.data, out_dir / f"eval_{epochs}", progress=False,
                                          ground_truth=gt)
        yield {"epoch": epochs, **evaluation.result.aps, "loss": float(result.metrics["loss"])}


def embed_proxy_trial(cfg, settings: TrialSettings, out_dir: str | os.PathLike) -> Iterator[dict]:
    """Train embedder `cfg` from scratch on the identity folders `settings.data` (comma-separated) and
    score it on the held-back identities' verification protocol (leanface.train.recognition). Yields
    {"epoch", "dev_acc", "loss"} per rung."""
    from ..recognize import Embedder
    from ..recognize.identities import dev_split, load_identity_faces
    from ..train import train
    from ..train.recognition import verify_crops

    out_dir = Path(out_dir)
    faces = load_identity_faces(settings.data.split(","), progress=False)
    dev = faces.subset(dev_split(faces, seed=settings.train.seed))
    steps = settings.train.resolved_steps()
    for i, epochs in enumerate(settings.rungs()):
        tcfg = dataclasses.replace(settings.train, epochs=epochs, lr_steps=steps, out_dir=str(out_dir / "train"),
                                   ckpt_interval=settings.epochs, eval_interval=0)
        result = train(tcfg, cfg, settings.data, resume=i > 0, progress=False)
        yield {"epoch": epochs, "dev_acc": verify_crops(Embedder(result.weights, batch_size=128), dev),
               "loss": float(result.metrics["loss"])}


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
