"""Checkpoints of a run: the resumable state (last.pt: weights, optimiser, schedule, scaler, random
generators and the configs it was made with), and the initial weights a run starts from."""
from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import numpy as np
import torch

from .. import serial
from ..errors import LeanfaceError
from ..files import atomic_write
from ..models.registry import load_state, read_checkpoint
from .config import TrainConfig

STATE_NAME = "last.pt"
WEIGHTS_NAME = "model.pt"
EPOCHS_DIR = "epochs"  # each epoch's weights, with save_epochs
# Only the length of the run, where outputs and evaluation go and how it runs may change on resume.
RESUME_FREE = frozenset({"epochs", "out_dir", "eval_interval", "ckpt_interval", "save_epochs", "workers", "device",
                         "procs"})


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



def load_initial(net, model_cfg, weights) -> None:
    ckpt_cfg, state = read_checkpoint(weights)
    if ckpt_cfg.to_dict() != model_cfg.to_dict():
        raise LeanfaceError(f"{weights}: weights of model {ckpt_cfg.name!r}, whose config differs from the "
                            f"trained model {model_cfg.name!r}")
    load_state(net, state, source=str(weights))


def save_state(path: Path, net, optimizer, scheduler, scaler, epoch: int, model_cfg, cfg: TrainConfig) -> None:
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


def resume_state(path: Path, net, optimizer, scheduler, scaler, model_cfg, cfg: TrainConfig) -> int:
    if not path.is_file():
        raise LeanfaceError(f"{path}: no training state to resume from")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file
        raise LeanfaceError(f"{path}: not a leanface training state ({type(exc).__name__})") from None
    if state.get("model_config") != model_cfg.to_dict():
        raise LeanfaceError(f"{path}: was trained with a different model ({state['model_config'].get('name')!r})")
    saved = serial.from_dict(TrainConfig, state["train_config"])
    changed = [f.name for f in dataclasses.fields(cfg) if f.name not in RESUME_FREE
               and getattr(saved, f.name) != getattr(cfg, f.name)]
    if changed:
        raise LeanfaceError(f"{path}: cannot resume with a changed {', '.join(changed)}")
    net.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    _set_rng_state(state["rng"])
    return int(state["epoch"])
