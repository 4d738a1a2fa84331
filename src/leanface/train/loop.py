"""The training loop of every task: SGD with linear warm-up and step decay, mixed precision,
data-parallel ranks, exact resume, metrics, curves and checkpoints.

What differs between tasks (dataset, collate, loss, periodic evaluation) is a task adapter chosen by
the model family's task (`register_task`; detection: leanface.train.detection.DetectionTask), so a
new task plugs in without touching this loop.

On a CPU the default is the fast path measured in bench/bench_train.py: one single-thread
DistributedDataParallel rank per core (gloo), channels_last tensors and bfloat16 autocast where
the CPU has bf16 instructions. One process with several threads is slower and collapses as soon
as anything else runs on a core.

    result = train(TrainConfig(epochs=80, out_dir="runs/500m"), "scrfd_500m_kps", "/data/widerface")

A run directory holds config.json (the resolved configuration), metrics.csv (one row per epoch),
last.pt (everything needed to resume), model.pt (final weights for `create_model(None,
weights=...)` and the Detector), curves.png and, with periodic evaluation, eval/epoch_<n>/.
"""
from __future__ import annotations

import csv
import dataclasses
import datetime
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from ..data.augment import CROP_CHOICES_SCRFD
from .. import serial
from ..errors import LeanfaceError
from ..files import atomic_write, save_figure
from ..host import available_cores
from ..outputs import OutputGuard
from ..models.registry import build_model, get_config, get_family, load_state, read_checkpoint, save_checkpoint
from .losses import LossWeights
from .margin import MarginLoss

STATE_NAME = "last.pt"
WEIGHTS_NAME = "model.pt"
METRICS_NAME = "metrics.csv"
CONFIG_NAME = "config.json"


def _opt(default, help: str, **kw):
    """A config field with its help: the docs of the Python argument and of its `leanface train` flag."""
    return field(default=default, metadata={"help": help, **kw})


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters; each field's help is `TrainConfig.help(name)` (and `leanface train -h`).

    Defaults are the official SCRFD recipe (SCRFD_FACTS 4.2/4.3); every family trains with this
    recipe and its task's data pipeline, with its own registered loss. SGD with momentum and weight
    decay; lr warms up linearly from warmup_ratio x lr and drops x0.1 at each of lr_steps. On a CPU
    the default path is single-thread DDP ranks, channels_last and bf16 autocast (see the module doc).
    """

    epochs: int = _opt(640, "total epochs (official 640)")
    batch_size: int = _opt(8, "images per optimiser step, split over the processes (official: 4 GPUs x 8)")
    lr: float = _opt(0.01, "base learning rate")
    momentum: float = _opt(0.9, "SGD momentum")
    weight_decay: float = _opt(5e-4, "SGD weight decay")
    warmup_iters: int = _opt(1500, "iterations of linear lr warm-up")
    warmup_ratio: float = _opt(0.001, "lr factor at the start of the warm-up")
    lr_steps: tuple[int, ...] | None = _opt(
        None, "epochs where lr drops x0.1, e.g. 440,544 (default: the official 440/640, 544/640 of epochs)")
    img_size: int = _opt(640, "square training input side, a multiple of 32")
    crop_choices: tuple[float, ...] = _opt(
        CROP_CHOICES_SCRFD, "sample redistribution: crop side / short side choices (the paper's [0.3, 1.0] "
        "baseline: 0.3,0.45,0.6,0.8,1.0)")
    clip_border: bool = _opt(True, "clip boxes to the crop (off: the 2.5g/10g configs)")
    close_ups: float = _opt(0.0, "share of the crops drawn around one face so it fills 40-90% of the crop: faces that "
                            "fill the frame, which sample redistribution's crops rarely make (0: the official recipe)")
    augment: bool = _opt(True, "random crops, flips and colour (off: whole images letterboxed, for overfitting checks)")
    freeze_bn_after: int | None = _opt(
        None, "from this epoch on BatchNorm normalises with its running statistics and keeps them, while "
        "its scale and shift still train (0: from the start, for fine-tuning on small batches and for EXTD; "
        "default never)", metavar="EPOCH")
    epoch_samples: int = _opt(0, "samples per epoch (0: the whole training set once); on a large pool, shorter "
                              "epochs give more frequent checkpoints and evaluations, every sample still seen "
                              "once per pass", metavar="N")
    workers: int = _opt(4, "data loading processes per training process")
    device: str = _opt("auto", "auto, cpu, cuda or cuda:N")
    amp: bool = _opt(True, "mixed precision: bf16 autocast on CPUs with bf16 instructions, fp16/bf16 on GPU "
                     "(off: float32 throughout)")
    channels_last: bool = _opt(True, "NHWC tensors, oneDNN's native layout (off: NCHW)")
    procs: int = _opt(0, "CPU training processes, each a single-thread DDP rank started by train itself "
                      "(0: one per core, each with at least two images of the batch; under torchrun the "
                      "launcher's processes)")
    out_dir: str = _opt("runs/train", "run folder")
    seed: int = _opt(0, "seed of initialisation, sampling order and augmentation")
    eval_interval: int = _opt(0, "evaluate every N epochs on the validation data (0: never)")
    ckpt_interval: int = _opt(1, "write the resumable state last.pt every N epochs (and at the end)")
    loss: LossWeights = _opt(LossWeights(), "SCRFD's loss weights (the SSD families' official loss has none)")
    margin: MarginLoss = _opt(MarginLoss(), "the embed task's loss: kind, scale, margin, label smoothing, "
                              "RegularFace, margin warm-up, distillation (leanface.train.margin)")

    @classmethod
    def help(cls, name: str) -> str:
        return next(f.metadata["help"] for f in dataclasses.fields(cls) if f.name == name)

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


class WarmupStepSchedule:
    """lr factor per iteration: linear warm-up (mmcv 'linear') times 0.1 per passed step epoch."""

    def __init__(self, iters_per_epoch: int, warmup_iters: int, warmup_ratio: float, steps: tuple[int, ...]):
        self.iters_per_epoch = iters_per_epoch
        self.warmup_iters = warmup_iters
        self.warmup_ratio = warmup_ratio
        self.steps = tuple(steps)

    def __call__(self, it: int) -> float:
        epoch = it // self.iters_per_epoch
        factor = 0.1 ** sum(epoch >= s for s in self.steps)
        if it < self.warmup_iters:
            factor *= 1 - (1 - it / self.warmup_iters) * (1 - self.warmup_ratio)
        return factor


class _EpochKeys(Sampler):
    """Yields (epoch, index) keys so augmentation is seeded per sample; order from DistributedSampler."""

    def __init__(self, base: DistributedSampler):
        self.base = base
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.base.set_epoch(epoch)

    def __iter__(self):
        return ((self.epoch, i) for i in self.base)

    def __len__(self) -> int:
        return len(self.base)


class _SliceKeys(_EpochKeys):
    """Epochs of `per_epoch` samples: epoch e takes positions [e * per_epoch, (e + 1) * per_epoch) of an endless
    stream of permutations of the data set (pass p shuffled with seed (seed, p)), so every sample is seen once
    per pass whatever the epoch length; each rank takes every world-th key."""

    def __init__(self, n: int, per_epoch: int, world: int, rank: int, seed: int):
        self.n, self.world, self.rank, self.seed = n, world, rank, seed
        self.per_epoch = per_epoch  # a multiple of the batch, so of the ranks: each takes the same number
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        start = self.epoch * self.per_epoch
        positions = range(start + self.rank, start + self.per_epoch, self.world)
        perms: dict[int, np.ndarray] = {}
        for pos in positions:
            p, k = divmod(pos, self.n)
            if p not in perms:
                perms[p] = np.random.default_rng((self.seed, p)).permutation(self.n)
            yield self.epoch, int(perms[p][k])

    def __len__(self) -> int:
        return self.per_epoch // self.world


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    owned: bool = False  # this run created the process group, so it also ends it

    @property
    def main(self) -> bool:
        return self.rank == 0


def _setup_distributed(device: torch.device) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    owned = not dist.is_initialized()
    if owned:
        # Rank 0 evaluates while the others wait at a barrier: allow more than the default timeout.
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=datetime.timedelta(hours=1))
    return _Dist(dist.get_rank(), dist.get_world_size(), owned)


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise LeanfaceError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LeanfaceError(f"device {name!r} requested but CUDA is not available")
    if device.type == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


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


def _check(cfg: TrainConfig) -> None:
    bad = _non_finite(cfg)
    if bad:
        raise LeanfaceError(f"{bad}: every number of a training config must be finite")
    if not cfg.lr > 0:
        raise LeanfaceError(f"lr must be above 0, got {cfg.lr}")
    if cfg.img_size <= 0 or cfg.img_size % 32:
        raise LeanfaceError(f"img_size must be a positive multiple of 32, got {cfg.img_size}")
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise LeanfaceError(f"epochs and batch_size must be at least 1 (got {cfg.epochs}, {cfg.batch_size})")
    if not cfg.crop_choices or min(cfg.crop_choices) <= 0:
        raise LeanfaceError(f"crop_choices must be positive numbers, got {cfg.crop_choices}")
    if not 0 <= cfg.close_ups <= 1:
        raise LeanfaceError(f"close_ups must be in [0, 1], got {cfg.close_ups}")
    if cfg.epoch_samples < 0 or cfg.epoch_samples % cfg.batch_size:
        # Whole batches only: a last batch of one image cannot take BatchNorm statistics.
        raise LeanfaceError(f"epoch_samples must be 0 (the whole set) or a multiple of batch_size "
                            f"{cfg.batch_size}, got {cfg.epoch_samples}")
    if cfg.procs < 0:
        raise LeanfaceError(f"procs must be at least 0 (0: one per core), got {cfg.procs}")
    if cfg.freeze_bn_after is not None and cfg.freeze_bn_after < 0:
        raise LeanfaceError(f"freeze_bn_after must be at least 0, got {cfg.freeze_bn_after}")


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _read_metrics(path: Path, done: int) -> list[dict]:
    """Rows of an existing metrics.csv for the `done` epochs already completed (a resumed run rewrites the
    rest). A row's `epoch` counts epochs completed, 1 for the first, as on the progress bar."""
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [row for row in csv.DictReader(f) if int(row["epoch"]) <= done]


def _write_metrics(path: Path, rows: list[dict]) -> None:
    fields = list(dict.fromkeys(k for row in rows for k in row))
    with atomic_write(path) as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _plot_curves(rows: list[dict], path: Path, loss_keys: tuple[str, ...], eval_keys: tuple[str, ...]) -> None:
    """Training losses per epoch, and the evaluation metrics when the run evaluates."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [int(r["epoch"]) for r in rows]
    evaluated = [(e, r) for e, r in zip(epochs, rows) if r.get(eval_keys[-1]) not in (None, "")] if eval_keys else []
    fig, axes = plt.subplots(1, 2 if evaluated else 1, figsize=(10 if evaluated else 5.5, 4), squeeze=False)
    ax_loss = axes[0, 0]
    for key in loss_keys:
        values = [float(r[key]) for r in rows]
        if any(values) and key != "num_pos" and not key.endswith("_ms"):  # no landmark term without landmarks
            ax_loss.plot(epochs, values, label=key)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss (epoch mean)")
    ax_loss.set_yscale("log")
    ax_loss.legend()
    if evaluated:
        ax_ap = axes[0, 1]
        for key in eval_keys:
            ax_ap.plot([e for e, _ in evaluated], [float(r[key]) for _, r in evaluated], "o-", label=key)
        ax_ap.set_xlabel("epoch")
        ax_ap.set_ylabel("validation metric")
        ax_ap.legend()
    save_figure(fig, path)


# task name (a Family's `task`) -> adapter class(cfg, model_cfg, data, val_data); see DetectionTask.
_TASKS: dict[str, type] = {}


def register_task(name: str, adapter: type) -> None:
    """Make the models of a task trainable. The adapter has `dataset` (indexed by (epoch, index)),
    `collate(samples) -> {"image": (B, C, H, W), ...}`, `loss(device) -> fn(outputs, batch) -> {key: scalar}`
    with `loss_keys` (the first is minimised), `evaluate(weights, out_dir, threads) -> {key: value}` with
    `eval_keys`, `describe() -> dict` for config.json and `summary() -> str` (printed at the start). Optional:
    `wrap(model) -> module` to train extra parameters beside the model (the embed task's class weights)
    and `unwrap(module) -> model`, what model.pt holds."""
    _TASKS[name] = adapter


def _task_for(model_cfg):
    task = get_family(model_cfg.family).task
    if task not in _TASKS:
        raise LeanfaceError(f"no training task {task!r} (model family {model_cfg.family!r})")
    return _TASKS[task]


def cpu_has_bf16() -> bool:
    """Whether this CPU runs bfloat16 convolutions natively (AVX-512 BF16 or AMX): where autocast pays."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def autocast_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of the fast path on `device`, or None for float32."""
    if not cfg.amp:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if device.type == "cpu" and cpu_has_bf16() else None


def reroute_cpu_convolutions(net: torch.nn.Module, bf16: bool, channels_last: bool) -> dict[str, int]:
    """Route two convolution shapes around oneDNN's CPU training kernels, on this instance's modules only
    (parameters and state dict unchanged); returns how many of each were rerouted.

    - Strided depthwise convolutions run in float32 under bf16 autocast (`bf16`): oneDNN has no fast bf16
      backward for them (~20% of scrfd_500m_kps's bf16 step, 3-15x the float32 time of the same layer,
      while every other layer is faster in bf16; docs/LAB_NOTES.md).
    - With `channels_last`, a 1x1 strided convolution without padding becomes subsampling then a 1x1
      stride-1 convolution, the same arithmetic: PyTorch 2.13's channels_last backward of the strided form
      crashes the process on some CPUs (segfault on an AMD EPYC, e.g. 8 channels at 112 px, the quality
      net's shortcut).
    """
    counts = {"depthwise_float32": 0, "pointwise_subsampled": 0}
    for m in net.modules():
        if not isinstance(m, torch.nn.Conv2d) or m.stride == (1, 1):
            continue
        if bf16 and m.groups == m.in_channels > 1:
            def forward(x, conv=m):
                with torch.autocast("cpu", enabled=False):
                    return torch.nn.Conv2d.forward(conv, x.float())

            m.forward = forward
            counts["depthwise_float32"] += 1
        elif channels_last and m.kernel_size == (1, 1) and m.padding == (0, 0) and m.dilation == (1, 1):
            def forward(x, conv=m):
                sy, sx = conv.stride
                return torch.nn.functional.conv2d(x[:, :, ::sy, ::sx], conv.weight, conv.bias, 1, 0, 1, conv.groups)

            m.forward = forward
            counts["pointwise_subsampled"] += 1
    return counts


def resolve_procs(cfg: TrainConfig, device: torch.device) -> int:
    """Processes `train` starts itself: cfg.procs, or for 0 one per core that splits the batch (CPU only).

    1 under torchrun (the launcher made the processes) and on GPU (use torchrun there).
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 or device.type != "cpu":
        return 1
    if cfg.procs:
        if cfg.batch_size % cfg.procs:
            raise LeanfaceError(f"batch_size {cfg.batch_size} does not split over {cfg.procs} processes")
        return cfg.procs
    # Each rank keeps at least two images: BatchNorm cannot take statistics over one.
    return max(n for n in range(1, min(available_cores(), cfg.batch_size // 2) + 1) if cfg.batch_size % n == 0)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, args: tuple, kwargs: dict) -> None:
    """Entry point of a rank started by `_spawn_ranks`: a single-thread process of a gloo group."""
    import cv2

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world), LEANFACE_RANK_CHILD="1")  # the parent already printed the summary
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    die_with_parent()
    if rank:
        kwargs = {**kwargs, "progress": False}
    train(*args, **kwargs)


def die_with_parent(*_) -> None:
    """End this process when the one that started it ends (e.g. `kill PID` of `leanface train`, or a sibling
    rank failing): an orphaned rank would go on writing the run folder beside a resumed run, an orphaned
    loader worker holds gigabytes. On Linux the kernel does it (PR_SET_PDEATHSIG); elsewhere a thread polls.
    Outputs are written atomically, so stopping anywhere loses at most the epoch in progress. Also the
    DataLoader's worker_init_fn (hence the ignored argument)."""
    import ctypes
    import signal
    import threading

    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # 1: PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
        else:
            if os.getppid() != parent or parent == 1:  # the parent was gone before we asked
                os._exit(1)
            return

    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="leanface-parent-watch").start()


def _spawn_ranks(procs: int, cfg: TrainConfig, model_cfg, data, **kwargs) -> TrainResult:
    """Run `train` in `procs` single-thread ranks on this machine; the result is read back from the run folder."""
    import torch.multiprocessing as mp

    try:
        mp.start_processes(_rank_main, args=(procs, _free_port(), (cfg, model_cfg, data), kwargs), nprocs=procs,
                           join=True, start_method="spawn")
    except mp.ProcessExitedException as exc:  # a rank killed (out of memory, `kill -9`): the others were stopped
        how = f"by {exc.signal_name}" if getattr(exc, "signal_name", None) else f"with status {exc.exit_code}"
        raise LeanfaceError(f"{cfg.out_dir}: training process {exc.error_index} of {procs} ended {how}; the others "
                            f"were stopped; --resume continues from the last finished epoch") from None
    except mp.ProcessRaisedException as exc:
        last = str(exc).strip().splitlines()[-1]
        if "LeanfaceError: " in last:
            raise LeanfaceError(last.split("LeanfaceError: ", 1)[-1]) from None
        raise
    out = Path(cfg.out_dir)
    history = _read_metrics(out / METRICS_NAME, cfg.epochs)
    return TrainResult(out, out / WEIGHTS_NAME, cfg.epochs, dict(history[-1]) if history else {}, history)


def train(cfg: TrainConfig, model, data, *, weights: str | os.PathLike | None = None,
          val_data: str | os.PathLike | None = None, resume: bool = False, exist_ok: bool = False,
          progress: bool = True) -> TrainResult:
    """Train `model` (zoo name or model config of any family with a training loss) on `data`.

    data: a WIDER-layout root (labelv2 landmarks when present, see `load_wider_split`), an
    annotation file (`read_annotations`), or a list of ImageFaces. weights: leanface weights of
    the same model config to start from (fine-tuning, e.g. imported official weights) instead of
    a random initialisation; unused when resuming. val_data: WIDER root for
    periodic evaluation (default: `data` when it is a folder with WIDER_val). resume: continue
    from `<out_dir>/last.pt` exactly where it stopped; otherwise an out_dir that holds a run is refused
    unless exist_ok. Under torchrun (WORLD_SIZE > 1) each
    process trains on its shard with DistributedDataParallel; rank 0 writes the outputs.
    """
    _check(cfg)
    out = Path(cfg.out_dir)
    _guard_out_dir(out, data, weights, val_data)
    if not resume and not exist_ok and int(os.environ.get("RANK", "0")) == 0 and any(
            (out / name).exists() for name in (STATE_NAME, WEIGHTS_NAME, METRICS_NAME)):
        raise LeanfaceError(f"{out}: holds a training run already; --resume (resume=True) continues it, "
                            f"--exist-ok (exist_ok=True) overwrites it")
    model_cfg = get_config(model) if isinstance(model, str) else model
    task = _task_for(model_cfg)(cfg, model_cfg, data, val_data)
    if progress and int(os.environ.get("RANK", "0")) == 0 and not os.environ.get("LEANFACE_RANK_CHILD"):
        print(task.summary(), file=sys.stderr)

    device = _resolve_device(cfg.device)
    procs = resolve_procs(cfg, device)
    if procs > 1:
        return _spawn_ranks(procs, cfg, model_cfg, data, weights=weights, val_data=task.val_data, resume=resume,
                            exist_ok=True, progress=progress)  # the folder was checked here
    return _fit(cfg, model_cfg, task, device, weights, resume, progress)


def _guard_out_dir(out: Path, data, weights, val_data) -> None:
    """The run folder through the output guard: a folder, never inside the data or a weights file. (Whether
    it already holds a run is `train`'s check: --resume or --exist-ok.)"""
    guard = OutputGuard("train", exist_ok=True)
    roots = data.split(",") if isinstance(data, str) else [data] if isinstance(data, os.PathLike) else []
    for root in [*roots, val_data]:
        if root is not None and Path(root).is_dir():
            guard.input_folder(root, "the training data")
        else:
            guard.inputs(root, what="the training data")
    guard.inputs(weights, what="the initial weights")
    guard.folder(out, "--out-dir")


def _fit(cfg: TrainConfig, model_cfg, task, device: torch.device, weights, resume: bool, progress: bool) -> TrainResult:
    """The loop itself, in this process (one rank of a group under torchrun or `_spawn_ranks`)."""
    ddp = _setup_distributed(device)
    if cfg.batch_size % ddp.world:
        raise LeanfaceError(f"batch_size {cfg.batch_size} does not split over {ddp.world} processes")
    out = Path(cfg.out_dir)
    amp_dtype = autocast_dtype(cfg, device)
    use_amp = amp_dtype is not None
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True

    torch.manual_seed(cfg.seed)
    net = build_model(model_cfg)
    if weights is not None and not resume:
        _load_initial(net, model_cfg, weights)
    if hasattr(task, "wrap"):  # e.g. the embed task's class weights, trained beside the model
        net = task.wrap(net)
    if device.type == "cpu":
        reroute_cpu_convolutions(net, bf16=amp_dtype == torch.bfloat16, channels_last=cfg.channels_last)
    net = net.to(device, memory_format=memory_format)
    net.train()
    if ddp.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    bare = net.module if ddp.world > 1 else net
    deployed = task.unwrap(bare) if hasattr(task, "unwrap") else bare  # what model.pt holds

    if cfg.epoch_samples:
        sampler = _SliceKeys(len(task.dataset), cfg.epoch_samples, ddp.world, ddp.rank, cfg.seed)
    else:
        sampler = _EpochKeys(DistributedSampler(task.dataset, ddp.world, ddp.rank, shuffle=True, seed=cfg.seed))
    # A last batch of one sample cannot take BatchNorm statistics (an embedder's feature BN fails on it): dropped.
    drop_last = len(sampler) > cfg.batch_size // ddp.world and len(sampler) % (cfg.batch_size // ddp.world) == 1
    loader = DataLoader(task.dataset, batch_size=cfg.batch_size // ddp.world, sampler=sampler, drop_last=drop_last,
                        num_workers=cfg.workers, collate_fn=task.collate, pin_memory=device.type == "cuda",
                        worker_init_fn=die_with_parent if cfg.workers > 0 else None,
                        persistent_workers=cfg.workers > 0, prefetch_factor=4 if cfg.workers > 0 else None)
    iters_per_epoch = len(loader)
    optimizer = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    schedule = WarmupStepSchedule(iters_per_epoch, cfg.warmup_iters, cfg.warmup_ratio, cfg.resolved_steps())
    # A lambda (not the schedule object) so the state dict holds only the iteration count and a
    # resumed run with more epochs uses the current schedule.
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: schedule(it))
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    loss_fn = task.loss(device)

    start_epoch = 0
    if resume:
        start_epoch = _load_state(out / STATE_NAME, bare, optimizer, scheduler, scaler, model_cfg, cfg)
    history = _read_metrics(out / METRICS_NAME, start_epoch) if ddp.main else []
    if ddp.main:
        _save_config(out, cfg, model_cfg, task, weights, ddp.world, device)

    for epoch in range(start_epoch, cfg.epochs):
        sampler.set_epoch(epoch)
        net.train()
        if cfg.freeze_bn_after is not None and epoch >= cfg.freeze_bn_after:
            for m in net.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.eval()
        sums = dict.fromkeys(task.loss_keys, 0.0)
        seen, t0, cpu0 = 0, time.perf_counter(), _cpu_seconds()
        bar = _progress(_one_line_errors(loader), epoch, cfg.epochs, enabled=progress and ddp.main,
                        total=iters_per_epoch)
        for batch in bar:
            x = batch["image"].to(device, non_blocking=True, memory_format=memory_format)
            with torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=use_amp):
                outputs = net(x)
            losses = loss_fn(outputs, batch)
            objective = losses[task.loss_keys[0]]
            if not scaler.is_enabled() and not torch.isfinite(objective):
                raise FloatingPointError(f"non-finite loss at epoch {epoch + 1}: "
                                         f"{ {k: float(v) for k, v in losses.items()} }")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(objective).backward()
            scaler.step(optimizer)
            scaler.update()
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            n = x.shape[0]
            seen += n
            for k, v in zip(sums, torch.stack([losses[k].detach().float().cpu() for k in sums]).tolist()):
                sums[k] += v * n
            if ddp.main and progress:
                bar.set_postfix(loss=f"{sums[task.loss_keys[0]] / seen:.3f}", lr=f"{lr:.2e}")
        seconds = time.perf_counter() - t0
        row = {"epoch": epoch + 1, "iters": (epoch + 1) * iters_per_epoch, "lr": lr,
               **{k: round(v / max(seen, 1), 5) for k, v in sums.items()},
               "images_per_s": round(seen * ddp.world / seconds, 2), "seconds": round(seconds, 1),
               "cpu_seconds": round((_cpu_seconds() - cpu0) * ddp.world, 1)}
        last = epoch + 1 == cfg.epochs
        evaluate = cfg.eval_interval and ((epoch + 1) % cfg.eval_interval == 0 or last)
        if ddp.main:
            if evaluate or last:
                save_checkpoint(out / WEIGHTS_NAME, model_cfg, deployed.state_dict(), epoch=epoch + 1)
            if (epoch + 1) % cfg.ckpt_interval == 0 or last:
                # Before evaluating: an evaluation that fails must not cost the epoch (--resume redoes only it).
                _save_state(out / STATE_NAME, bare, optimizer, scheduler, scaler, epoch + 1, model_cfg, cfg)
            if evaluate:
                row.update(task.evaluate(out / WEIGHTS_NAME, out / "eval" / f"epoch_{epoch + 1}",
                                         threads=ddp.world if device.type == "cpu" else None))
            history.append(row)
            _write_metrics(out / METRICS_NAME, history)
            if (epoch + 1) % cfg.ckpt_interval == 0 or last:
                _plot_curves(history, out / "curves.png", task.loss_keys, task.eval_keys)
        if ddp.world > 1:
            dist.barrier()
    if start_epoch >= cfg.epochs and ddp.main and not (out / WEIGHTS_NAME).is_file():
        save_checkpoint(out / WEIGHTS_NAME, model_cfg, deployed.state_dict(), epoch=cfg.epochs)
    if ddp.owned:
        dist.destroy_process_group()
    final = history[-1] if history else {}
    return TrainResult(out, out / WEIGHTS_NAME, cfg.epochs, dict(final), list(history))


def _cpu_seconds() -> float:
    """CPU seconds used so far by this process and its live children (the data-loading workers, where a
    teacher may run): what a run costs on a shared machine, whatever else runs beside it. Linux; elsewhere
    this process alone."""
    total = time.process_time()
    try:
        tick = os.sysconf("SC_CLK_TCK")
        children = set()
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/children") as f:
                children.update(f.read().split())
        for pid in children:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    except (OSError, ValueError, IndexError):
        pass
    return total


def _progress(batches, epoch: int, epochs: int, enabled: bool, total: int):
    from tqdm import tqdm

    return tqdm(batches, desc=f"epoch {epoch + 1}/{epochs}", unit="it", total=total, file=sys.stderr,
                disable=not enabled, dynamic_ncols=True)


def _one_line_errors(loader):
    """Batches of `loader`; a user error raised in a worker process keeps its one-line message."""
    try:
        yield from loader
    except LeanfaceError as exc:
        last = str(exc).strip().splitlines()[-1]
        raise LeanfaceError(last.split("LeanfaceError: ", 1)[-1]) from None


def _load_initial(net, model_cfg, weights) -> None:
    ckpt_cfg, state = read_checkpoint(weights)
    if ckpt_cfg.to_dict() != model_cfg.to_dict():
        raise LeanfaceError(f"{weights}: weights of model {ckpt_cfg.name!r}, whose config differs from the "
                            f"trained model {model_cfg.name!r}")
    load_state(net, state, source=str(weights))


def _save_config(out: Path, cfg: TrainConfig, model_cfg, task, weights, world: int, device: torch.device) -> None:
    record = {
        "model": model_cfg.to_dict(),
        "train": cfg.to_dict(),
        "lr_steps_resolved": list(cfg.resolved_steps()),
        **task.describe(),
        "weights": None if weights is None else str(weights),
        "world_size": world,
        "batch_per_process": cfg.batch_size // world,
        "device": str(device),
        "threads_per_process": torch.get_num_threads(),
        "autocast": str(autocast_dtype(cfg, device)).replace("torch.", "") if autocast_dtype(cfg, device) else "float32",
        "torch": torch.__version__,
    }
    with atomic_write(out / CONFIG_NAME) as f:
        json.dump(record, f, indent=2)
        f.write("\n")


def _save_state(path: Path, net, optimizer, scheduler, scaler, epoch: int, model_cfg, cfg: TrainConfig) -> None:
    state = {
        "epoch": epoch,
        "model_config": model_cfg.to_dict(),
        "train_config": cfg.to_dict(),
        "model": net.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "rng": _rng_state(),
    }
    with atomic_write(path, binary=True) as f:
        torch.save(state, f)


def _load_state(path: Path, net, optimizer, scheduler, scaler, model_cfg, cfg: TrainConfig) -> int:
    if not path.is_file():
        raise LeanfaceError(f"{path}: no training state to resume from")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file
        raise LeanfaceError(f"{path}: not a leanface training state ({type(exc).__name__})") from None
    if state.get("model_config") != model_cfg.to_dict():
        raise LeanfaceError(f"{path}: was trained with a different model ({state['model_config'].get('name')!r})")
    saved = serial.from_dict(TrainConfig, state["train_config"])
    # Only the length of the run and where outputs/evaluation go may change on resume.
    free = {"epochs", "out_dir", "eval_interval", "ckpt_interval", "workers", "device", "procs"}
    changed = [f.name for f in dataclasses.fields(cfg) if f.name not in free
               and getattr(saved, f.name) != getattr(cfg, f.name)]
    if changed:
        raise LeanfaceError(f"{path}: cannot resume with a changed {', '.join(changed)}")
    net.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    _set_rng_state(state["rng"])
    return int(state["epoch"])


