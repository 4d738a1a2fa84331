"""What a run folder records besides checkpoints: config.json (the resolved configuration and the machine it
ran on), metrics.csv (one row per epoch) and curves.png."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import torch

from ..files import atomic_write, save_figure
from .config import TrainConfig
from .cpu import autocast_dtype

METRICS_NAME = "metrics.csv"
CONFIG_NAME = "config.json"


def read_metrics(path: Path, done: int) -> list[dict]:
    """Rows of an existing metrics.csv for the `done` epochs already completed (a resumed run rewrites the
    rest). A row's `epoch` counts epochs completed, 1 for the first, as on the progress bar."""
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [row for row in csv.DictReader(f) if int(row["epoch"]) <= done]


def write_metrics(path: Path, rows: list[dict]) -> None:
    fields = list(dict.fromkeys(k for row in rows for k in row))
    with atomic_write(path) as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def plot_curves(rows: list[dict], path: Path, loss_keys: tuple[str, ...], eval_keys: tuple[str, ...]) -> None:
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


def save_config(out: Path, cfg: TrainConfig, model_cfg, task, weights, world: int, device: torch.device) -> None:
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
