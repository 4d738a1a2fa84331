"""What the training loop needs of a task: the `TaskAdapter` interface, and the adapter of a model's task
(looked up in the task table, `leanface.tasks`)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

import torch

from .. import tasks
from ..models.registry import get_family


@runtime_checkable
class TaskAdapter(Protocol):
    """One task's side of training, built as adapter(train_config, model_config, data, val_data).

    dataset: indexed by (epoch, index) keys, so augmentation is seeded per sample. collate: samples -> a
    batch {"image": (B, C, H, W) tensor, ...}. loss(device): fn(outputs, batch) -> {key: scalar tensor}
    over `loss_keys` (the first is minimised). evaluate(weights, out_dir, threads): {key: value} over
    `eval_keys`. val_data: what evaluation reads (None: no evaluation). describe(): what config.json
    records of the data. summary(): the line printed at the start.

    Optional: wrap(model) -> module, to train extra parameters beside the model (the embed task's class
    weights), and unwrap(module) -> model, what model.pt holds.
    """

    dataset: object
    loss_keys: tuple[str, ...]
    eval_keys: tuple[str, ...]
    val_data: object

    def collate(self, samples: list) -> dict: ...

    def loss(self, device: torch.device) -> Callable[[object, dict], dict]: ...

    def evaluate(self, weights: Path, out_dir: Path, threads: int | None = None) -> dict: ...

    def describe(self) -> dict: ...

    def summary(self) -> str: ...


def adapter_for(model_cfg) -> type:
    """The adapter class of the model's task."""
    return tasks.get(get_family(model_cfg.family).task).load("trainer")
