"""Official mmdet SCRFD checkpoints (`.pth` with `state_dict`) -> leanface weights (keys match 1:1)."""
from __future__ import annotations

import torch

from ...errors import LeanfaceError
from ..registry import build_model, get_config, list_models
from .base import register_importer

# Buffers of the official head that inference never uses (DFL integral, disabled in every config).
_UNUSED = ("bbox_head.integral.project",)


def _load(path: str) -> dict | None:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - not a plain tensor pickle
        return None
    return obj if isinstance(obj, dict) else None


def _accepts(path: str) -> bool:
    if not path.lower().endswith((".pth", ".pt")):
        return False
    obj = _load(path)
    if obj is None:
        return False
    state = obj.get("state_dict", obj)
    return any(isinstance(k, str) and k.startswith("bbox_head.") for k in state)


@register_importer("mmdet", _accepts)
def load_mmdet(path: str, model: str | None):
    obj = _load(path)
    state = {k: v for k, v in obj.get("state_dict", obj).items() if k not in _UNUSED}
    candidates = [model] if model else list_models("scrfd_*")
    first_reason = None
    for name in candidates:
        cfg = get_config(name)
        own = build_model(cfg).state_dict()
        missing = [k for k in own if k not in state]
        extra = [k for k in state if k not in own]
        wrong = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
        if not (missing or extra or wrong):
            return cfg, {k: state[k].float() if state[k].is_floating_point() else state[k] for k in own}
        if first_reason is None:
            k = (missing or extra or wrong)[0]
            kind = "missing" if missing else "unexpected" if extra else "wrong shape"
            first_reason = f"{name}: {kind} key {k}"
    raise LeanfaceError(f"{path}: matches no SCRFD model ({first_reason})")
