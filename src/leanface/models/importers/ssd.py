"""Official EXTD and EResFD PyTorch checkpoints -> leanface weights.

EXTD_{32,48,64}.pth: one flat state dict (or {'weight': state dict, 'epoch': n}) with prefixes
base/upfeat/loc/conf. EResFD: five state dicts `<prefix>.{base,loc,conf,act_loc,act_conf}.pth`
loaded into the official sub-modules (the act_* files are empty: those modules are ReLUs); pass
any of them and the siblings are found. Keys are renamed by the rules below, and the rename must
be a bijection onto the model's state dict: every checkpoint tensor is used exactly once.
"""
from __future__ import annotations

import os
import re

import torch

from ...errors import LeanfaceError
from ..registry import build_model, get_config, list_models
from .base import register_importer

_ERESFD_PARTS = ("base", "loc", "conf", "act_loc", "act_conf")
_ERESFD_PART_RE = re.compile(r"^(?P<prefix>.+)\.(?P<part>" + "|".join(_ERESFD_PARTS) + r")\.pth$")

# (official key pattern, leanface key), applied in order to every key.
_RENAMES = {
    "extd": [(r"^base\.", "backbone."), (r"^upfeat\.", "neck.")],
    "eresfd": [
        (r"^base\.(conv[1-4])\.", r"backbone.\1."),
        (r"^base\.m0\.b2_([1-5])\.", lambda m: f"backbone.stages.{int(m[1]) - 1}."),
        (r"^base\.m0\.fpn\.w1$", "neck.fusion_weights"),
        (r"^base\.m0\.fpn\.laterals\.(\d+)\.conv\.", r"neck.laterals.\1."),
        (r"^base\.m0\.fpn\.itm\.(\d+)\.conv\.", r"neck.refine.\1."),
        (r"^base\.m0\.FEM_(\d+)\.res_branch(\d)\.", r"context.\1.branch\2."),
        (r"\.res_layer\.", ".conv."),
        (r"\.shortcut_layer\.", ".shortcut."),
    ],
}


def _torch_load(path: str):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any unpickling failure means "not this kind of file"
        return None


def _flat_state(obj) -> dict | None:
    if isinstance(obj, dict) and isinstance(obj.get("weight"), dict):
        obj = obj["weight"]
    if isinstance(obj, dict) and all(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items()):
        return obj
    return None


def _eresfd_parts(path: str) -> dict[str, str] | None:
    m = _ERESFD_PART_RE.match(path)
    if m is None:
        return None
    return {part: f"{m['prefix']}.{part}.pth" for part in _ERESFD_PARTS}


def _is_extd(state: dict) -> bool:
    return any(k.startswith("upfeat.") for k in state) and any(k.startswith("base.") for k in state)


def _accepts(path: str) -> bool:
    if not path.lower().endswith(".pth"):
        return False
    if _eresfd_parts(path) is not None:
        return True
    state = _flat_state(_torch_load(path))
    return state is not None and _is_extd(state)


def _read_eresfd(path: str) -> dict:
    """The five part files -> one state dict with keys '<part>.<key>', as the official module tree names them."""
    state = {}
    for part, part_path in _eresfd_parts(path).items():
        if not os.path.isfile(part_path):
            if part.startswith("act_"):
                continue  # parameter-free ReLUs: the file carries nothing
            raise LeanfaceError(f"{part_path}: missing part of the EResFD checkpoint (needs {part}.pth beside "
                                f"{os.path.basename(path)})")
        sub = _torch_load(part_path)
        if not isinstance(sub, dict) or (sub and _flat_state(sub) is None):
            raise LeanfaceError(f"{part_path}: not an EResFD state dict")
        if part.startswith("act_") and sub:
            raise LeanfaceError(f"{part_path}: expected no tensors (the official {part} modules are ReLUs), "
                                f"found {len(sub)}")
        state.update({f"{part}.{k}": v for k, v in sub.items()})
    return state


def _rename(family: str, key: str) -> str:
    for pattern, repl in _RENAMES[family]:
        key = re.sub(pattern, repl, key)
    return key


def _match(path: str, family: str, name: str, official: dict) -> tuple[object, dict] | str:
    """(config, state) if the checkpoint maps one-to-one onto model `name`, else the first reason it does not."""
    cfg = get_config(name)
    own = build_model(cfg).state_dict()
    renamed: dict[str, str] = {}
    for k in official:
        new = _rename(family, k)
        if new in renamed:
            return f"{k} and {renamed[new]} map to the same parameter {new}"
        renamed[new] = k
    unused = [renamed[k] for k in renamed if k not in own]
    missing = [k for k in own if k not in renamed]
    wrong = [k for k in own if k in renamed and tuple(official[renamed[k]].shape) != tuple(own[k].shape)]
    if unused:
        return f"checkpoint tensor {unused[0]} has no place in {name} ({len(unused)} unused)"
    if missing:
        return f"{name} parameter {missing[0]} is not in the checkpoint ({len(missing)} missing)"
    if wrong:
        k = wrong[0]
        return f"{renamed[k]}: checkpoint {tuple(official[renamed[k]].shape)}, {name} {tuple(own[k].shape)}"
    state = {}
    for k in own:
        v = official[renamed[k]]
        state[k] = v.float() if v.is_floating_point() else v
    assert len(state) == len(official) == len(own), "every checkpoint tensor is used exactly once"
    return cfg, state


@register_importer("ssd", _accepts)
def load_ssd(path: str, model: str | None):
    if _eresfd_parts(path) is not None:
        family, official = "eresfd", _read_eresfd(path)
    else:
        family, official = "extd", _flat_state(_torch_load(path))
    candidates = [model] if model else [n for n in list_models() if get_config(n).family == family]
    if model and get_config(model).family != family:
        raise LeanfaceError(f"{path}: an official {family.upper()} checkpoint cannot be loaded into {model}")
    reasons = []
    for name in candidates:
        result = _match(path, family, name, official)
        if not isinstance(result, str):
            return result
        reasons.append(f"{name}: {result}")
    raise LeanfaceError(f"{path}: matches no {family} zoo model ({reasons[0]})")
