"""The training configuration (every field's help is its `leanface train` flag's), the result of a run, and the
checks a configuration passes before anything starts."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

from ..data.augment import AugmentConfig
from ..errors import LeanfaceError
from ..flags import help_of, option
from .losses import LossWeights
from .margin import MarginLoss


# TrainConfig fields that moved into TrainConfig.augment, under the same names.
MOVED_TO_AUGMENT = ("img_size", "crop_choices", "clip_border", "close_ups")


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters; each field's help is `TrainConfig.help(name)` (and `leanface train -h`).

    Defaults are the official SCRFD recipe (SCRFD_FACTS 4.2/4.3); every family trains with this
    recipe and its task's data pipeline, with its own registered loss. SGD with momentum and weight
    decay; lr warms up linearly from warmup_ratio x lr and drops x0.1 at each of lr_steps. On a CPU
    the default path is single-thread DDP ranks, channels_last and bf16 autocast (see the module doc).
    """

    epochs: int = option(640, "total epochs (official 640)")
    batch_size: int = option(8, "images per optimiser step, split over the processes (official: 4 GPUs x 8)")
    lr: float = option(0.01, "base learning rate")
    momentum: float = option(0.9, "SGD momentum")
    weight_decay: float = option(5e-4, "SGD weight decay")
    warmup_iters: int = option(1500, "iterations of linear lr warm-up")
    warmup_ratio: float = option(0.001, "lr factor at the start of the warm-up")
    lr_steps: tuple[int, ...] | None = option(
        None, "epochs where lr drops x0.1, e.g. 440,544 (default: the official 440/640, 544/640 of epochs)")
    augment: AugmentConfig = option(AugmentConfig(), "how samples are drawn: size, sample redistribution's crops, "
                                    "close-ups, flips, colour (leanface.data.AugmentConfig)", flat=True)
    freeze_bn_after: int | None = option(
        None, "from this epoch on BatchNorm normalises with its running statistics and keeps them, while "
        "its scale and shift still train (0: from the start, for fine-tuning on small batches and for EXTD; "
        "default never)", metavar="EPOCH")
    epoch_samples: int = option(0, "samples per epoch (0: the whole training set once); on a large pool, shorter "
                              "epochs give more frequent checkpoints and evaluations, every sample still seen "
                              "once per pass", metavar="N")
    workers: int = option(4, "data loading processes per training process")
    device: str = option("auto", "auto, cpu, cuda or cuda:N")
    amp: bool = option(True, "mixed precision: bf16 autocast on CPUs with bf16 instructions, fp16/bf16 on GPU "
                     "(off: float32 throughout)")
    channels_last: bool = option(True, "NHWC tensors, oneDNN's native layout (off: NCHW)")
    procs: int = option(0, "CPU training processes, each a single-thread DDP rank started by train itself "
                      "(0: one per core, each with at least two images of the batch; under torchrun the "
                      "launcher's processes)")
    out_dir: str = option("runs/train", "run folder")
    seed: int = option(0, "seed of initialisation, sampling order and augmentation")
    eval_interval: int = option(0, "evaluate every N epochs on the validation data (0: never)")
    ckpt_interval: int = option(1, "write the resumable state last.pt every N epochs (and at the end)")
    save_epochs: bool = option(False, "keep every epoch's weights as epochs/eNNN.pt in the run folder, for "
                               "`leanface average` (weight averaging: at a constant lr single epochs differ by "
                               "points of AP)")
    loss: LossWeights = option(LossWeights(), "SCRFD's loss weights (the SSD families' official loss has none)")
    margin: MarginLoss = option(MarginLoss(), "the embed task's loss: kind, scale, margin, label smoothing, "
                              "RegularFace, margin warm-up, distillation (leanface.train.margin)")

    @classmethod
    def help(cls, name: str) -> str:
        """The help of a field; a nested one by its dotted name (augment.img_size)."""
        return help_of(cls, name)

    @staticmethod
    def upgrade_record(record: dict) -> dict:
        """A record written before the augmentation settings were a nested config (flat img_size, crop_choices,
        clip_border, close_ups, and augment as a switch) in today's layout; `serial.from_dict` calls it."""
        moved = {k: record[k] for k in MOVED_TO_AUGMENT if k in record}
        if not moved and not isinstance(record.get("augment"), bool):
            return record
        record = {k: v for k, v in record.items() if k not in MOVED_TO_AUGMENT}
        nested = dict(record["augment"]) if isinstance(record.get("augment"), dict) else {}
        if isinstance(record.get("augment"), bool):
            nested["enabled"] = record["augment"]
        return {**record, "augment": {**nested, **moved}}

    def resolved_steps(self) -> tuple[int, ...]:
        if self.lr_steps is not None:
            return tuple(self.lr_steps)
        return (round(self.epochs * 440 / 640), round(self.epochs * 544 / 640))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TrainResult:
    """What a run produced. metrics: the last epoch's row of metrics.csv (losses, lr, APs if evaluated)."""

    out_dir: Path
    weights: Path
    epochs: int
    metrics: dict
    history: list[dict]


def _non_finite(cfg, prefix: str = "") -> str | None:
    """The dotted name of the first NaN or infinite number in a (nested) config, or None."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            found = _non_finite(value, f"{prefix}{f.name}.")
            if found:
                return found
        values = value if isinstance(value, tuple) else (value,)
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            return f"{prefix}{f.name} = {value}"
    return None



def check(cfg: TrainConfig) -> None:
    bad = _non_finite(cfg)
    if bad:
        raise LeanfaceError(f"{bad}: every number of a training config must be finite")
    if not cfg.lr > 0:
        raise LeanfaceError(f"lr must be above 0, got {cfg.lr}")
    aug = cfg.augment
    if aug.img_size <= 0 or aug.img_size % 32:
        raise LeanfaceError(f"img_size must be a positive multiple of 32, got {aug.img_size}")
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise LeanfaceError(f"epochs and batch_size must be at least 1 (got {cfg.epochs}, {cfg.batch_size})")
    if not aug.crop_choices or min(aug.crop_choices) <= 0:
        raise LeanfaceError(f"crop_choices must be positive numbers, got {aug.crop_choices}")
    if not 0 <= aug.close_ups <= 1:
        raise LeanfaceError(f"close_ups must be in [0, 1], got {aug.close_ups}")
    if cfg.epoch_samples < 0 or cfg.epoch_samples % cfg.batch_size:
        # Whole batches only: a last batch of one image cannot take BatchNorm statistics.
        raise LeanfaceError(f"epoch_samples must be 0 (the whole set) or a multiple of batch_size "
                            f"{cfg.batch_size}, got {cfg.epoch_samples}")
    if cfg.procs < 0:
        raise LeanfaceError(f"procs must be at least 0 (0: one per core), got {cfg.procs}")
    if cfg.freeze_bn_after is not None and cfg.freeze_bn_after < 0:
        raise LeanfaceError(f"freeze_bn_after must be at least 0, got {cfg.freeze_bn_after}")

