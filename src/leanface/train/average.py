"""Weight averaging: one model from the weights of several epochs (or runs) of the same model.

At a constant learning rate the weights wander around a minimum, and single epochs differ by points of AP
(the distilled detector's long run: 85.1 / 82.8 / 55.7 at epoch 45, 81.6 / 78.8 / 55.1 at epoch 46); their
average sits nearer its centre (Izmailov et al., "Averaging Weights Leads to Wider Optima", 2018: SWA; Wortsman
et al. 2022, "Model soups"). Every floating-point tensor is averaged, BatchNorm's running statistics included
(an approximation of recomputing them, measured adequate here: docs/LAB_NOTES.md); integer buffers (BatchNorm's
batch counts) are taken from the last file.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

from ..errors import LeanfaceError
from ..models.registry import read_checkpoint


def average_weights(paths: Sequence[str | os.PathLike]) -> tuple[object, dict]:
    """(model config, averaged state dict) of leanface weights files of one model (`model.pt`, `epochs/e*.pt`)."""
    if len(paths) < 2:
        raise LeanfaceError(f"averaging needs at least two weights files, got {len(paths)}")
    cfg, first = read_checkpoint(paths[0])
    sums = {k: v.double() if v.is_floating_point() else v for k, v in first.items()}
    for path in paths[1:]:
        other_cfg, state = read_checkpoint(path)
        if other_cfg.to_dict() != cfg.to_dict():
            raise LeanfaceError(f"{path}: weights of {other_cfg.name!r} with another config than {paths[0]} "
                                f"({cfg.name!r}); only weights of one model average")
        if state.keys() != sums.keys() or any(state[k].shape != sums[k].shape for k in sums):
            raise LeanfaceError(f"{path}: its tensors differ from those of {paths[0]}")
        for k, v in state.items():
            sums[k] = sums[k] + v.double() if v.is_floating_point() else v
    return cfg, {k: (v / len(paths)).to(first[k].dtype) if v.is_floating_point() else v for k, v in sums.items()}
