"""The training loop of every task: SGD with linear warm-up and step decay, mixed precision,
data-parallel ranks, exact resume, metrics, curves and checkpoints.

What differs between tasks (dataset, collate, loss, periodic evaluation) is the task's adapter
(`adapter.TaskAdapter`, named by the task table `leanface.tasks`; detection:
leanface.train.detection.DetectionTask), so a new task plugs in without touching this loop. Around it:
`config` (TrainConfig), `processes` (device, ranks), `cpu` (the CPU fast path), `checkpoints` (last.pt,
initial weights) and `records` (config.json, metrics.csv, curves.png).

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

import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from ..errors import LeanfaceError
from ..models.registry import build_model, get_config, save_checkpoint
from ..outputs import OutputGuard
from .adapter import adapter_for
from .checkpoints import EPOCHS_DIR, STATE_NAME, WEIGHTS_NAME, load_initial, resume_state, save_state
from .config import TrainConfig, TrainResult, check
from .cpu import autocast_dtype, cpu_seconds, reroute_cpu_convolutions
from .processes import die_with_parent, resolve_device, resolve_procs, setup_distributed, spawn_ranks
from .records import METRICS_NAME, plot_curves, read_metrics, save_config, write_metrics


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
    check(cfg)
    out = Path(cfg.out_dir)
    _guard_out_dir(out, data, weights, val_data)
    if not resume and not exist_ok and int(os.environ.get("RANK", "0")) == 0 and any(
            (out / name).exists() for name in (STATE_NAME, WEIGHTS_NAME, METRICS_NAME)):
        raise LeanfaceError(f"{out}: holds a training run already; --resume (resume=True) continues it, "
                            f"--exist-ok (exist_ok=True) overwrites it")
    model_cfg = get_config(model) if isinstance(model, str) else model
    task = adapter_for(model_cfg)(cfg, model_cfg, data, val_data)
    if progress and int(os.environ.get("RANK", "0")) == 0 and not os.environ.get("LEANFACE_RANK_CHILD"):
        print(task.summary(), file=sys.stderr)

    device = resolve_device(cfg.device)
    procs = resolve_procs(cfg, device)
    if procs > 1:
        spawn_ranks(procs, cfg.out_dir, train, (cfg, model_cfg, data),
                    dict(weights=weights, val_data=task.val_data, resume=resume, exist_ok=True,
                         progress=progress))  # the folder was checked here
        history = read_metrics(out / METRICS_NAME, cfg.epochs)
        return TrainResult(out, out / WEIGHTS_NAME, cfg.epochs, dict(history[-1]) if history else {}, history)
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
    ddp = setup_distributed(device)
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
        load_initial(net, model_cfg, weights)
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
        start_epoch = resume_state(out / STATE_NAME, bare, optimizer, scheduler, scaler, model_cfg, cfg)
    history = read_metrics(out / METRICS_NAME, start_epoch) if ddp.main else []
    if ddp.main:
        save_config(out, cfg, model_cfg, task, weights, ddp.world, device)

    for epoch in range(start_epoch, cfg.epochs):
        sampler.set_epoch(epoch)
        net.train()
        if cfg.freeze_bn_after is not None and epoch >= cfg.freeze_bn_after:
            for m in net.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.eval()
        sums = dict.fromkeys(task.loss_keys, 0.0)
        seen, t0, cpu0 = 0, time.perf_counter(), cpu_seconds()
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
               "cpu_seconds": round((cpu_seconds() - cpu0) * ddp.world, 1)}
        last = epoch + 1 == cfg.epochs
        evaluate = cfg.eval_interval and ((epoch + 1) % cfg.eval_interval == 0 or last)
        if ddp.main:
            if evaluate or last:
                save_checkpoint(out / WEIGHTS_NAME, model_cfg, deployed.state_dict(), epoch=epoch + 1)
            if cfg.save_epochs:
                (out / EPOCHS_DIR).mkdir(exist_ok=True)
                save_checkpoint(out / EPOCHS_DIR / f"e{epoch + 1:03d}.pt", model_cfg, deployed.state_dict(),
                                epoch=epoch + 1)
            if (epoch + 1) % cfg.ckpt_interval == 0 or last:
                # Before evaluating: an evaluation that fails must not cost the epoch (--resume redoes only it).
                save_state(out / STATE_NAME, bare, optimizer, scheduler, scaler, epoch + 1, model_cfg, cfg)
            if evaluate:
                row.update(task.evaluate(out / WEIGHTS_NAME, out / "eval" / f"epoch_{epoch + 1}",
                                         threads=ddp.world if device.type == "cpu" else None))
            history.append(row)
            write_metrics(out / METRICS_NAME, history)
            if (epoch + 1) % cfg.ckpt_interval == 0 or last:
                plot_curves(history, out / "curves.png", task.loss_keys, task.eval_keys)
        if ddp.world > 1:
            dist.barrier()
    if start_epoch >= cfg.epochs and ddp.main and not (out / WEIGHTS_NAME).is_file():
        save_checkpoint(out / WEIGHTS_NAME, model_cfg, deployed.state_dict(), epoch=cfg.epochs)
    if ddp.owned:
        dist.destroy_process_group()
    final = history[-1] if history else {}
    return TrainResult(out, out / WEIGHTS_NAME, cfg.epochs, dict(final), list(history))


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
