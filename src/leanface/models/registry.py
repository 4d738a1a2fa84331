"""Model registry: zoo names -> configs, config families -> builders, one factory.

    @register_model
    def scrfd_500m() -> SCRFDConfig: ...

    model = create_model("scrfd_500m", weights="w.pt")
"""
from __future__ import annotations

import fnmatch
import os
from typing import Callable

import torch
from torch import nn

from ..errors import LeanfaceError

_MODELS: dict[str, Callable[[], object]] = {}
_FAMILIES: dict[str, tuple[Callable[[object], nn.Module], type]] = {}
_DECODERS: dict[str, Callable] = {}
_LOSSES: dict[str, Callable] = {}

CHECKPOINT_FORMAT = "leanface-checkpoint-v1"


def register_model(fn: Callable[[], object]) -> Callable[[], object]:
    """Register a zero-argument function returning a model config under the function's name.

    The name may be overridden by a `name` attribute on the function (for names such as 'scrfd_2.5g').
    """
    name = getattr(fn, "model_name", fn.__name__)
    if name in _MODELS:
        raise ValueError(f"model {name!r} registered twice")
    _MODELS[name] = fn
    return fn


def register_family(family: str, builder: Callable[[object], nn.Module], config_cls: type,
                    decoder: Callable | None = None, loss: Callable | None = None) -> None:
    """`decoder(cfg)` makes the family's output decoder (see leanface.infer.decode); SCRFD's is built in.

    `loss(cfg, input_hw, device, weights)` makes the family's training loss for (H, W) inputs: a callable
    `(net(x), boxes, landmarks, landmark_valid) -> {"loss", "cls", "box", "kps", "num_pos": scalar tensors}`
    (see leanface.train.scrfd_loss); `weights` is the trainer's LossWeights. Families without one cannot
    be trained.
    """
    _FAMILIES[family] = (builder, config_cls)
    if decoder is not None:
        _DECODERS[family] = decoder
    if loss is not None:
        _LOSSES[family] = loss


def decoder_factory(family: str) -> Callable:
    _ensure_zoo()
    return _DECODERS[family]


def loss_factory(family: str) -> Callable:
    _ensure_zoo()
    if family not in _LOSSES:
        raise LeanfaceError(f"model family {family!r} has no training loss, so it cannot be trained")
    return _LOSSES[family]


def config_class_for_family(family: str) -> type:
    _ensure_zoo()
    return _FAMILIES[family][1]


def list_models(pattern: str = "*") -> list[str]:
    _ensure_zoo()
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))


def get_config(name: str):
    """A zoo name, or the path of a JSON config file (`cfg.to_json()`, e.g. a searched model)."""
    if name.lower().endswith(".json"):
        return _config_file(name)
    _ensure_zoo()
    if name not in _MODELS:
        raise LeanfaceError(f"unknown model {name!r}; known: {', '.join(list_models())}")
    return _MODELS[name]()


def _config_file(path: str):
    import json

    from .config import config_from_dict

    try:
        with open(path) as f:
            return config_from_dict(json.load(f))
    except FileNotFoundError:
        raise LeanfaceError(f"{path}: model config file not found") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise LeanfaceError(f"{path}: not a leanface model config ({type(exc).__name__}: {exc})") from None


def build_model(cfg) -> nn.Module:
    _ensure_zoo()
    builder, _ = _FAMILIES[cfg.family]
    return builder(cfg)


def create_model(model, weights: str | os.PathLike | None = None, **overrides) -> nn.Module:
    """Build a model from a zoo name or a config and optionally load leanface weights.

    `overrides` replace top-level config fields (e.g. head=...). With `model=None` the config
    is read from the weights file itself.
    """
    if model is None:
        if weights is None:
            raise LeanfaceError("create_model needs a model name, a config, or a weights file")
        cfg = read_checkpoint(weights)[0]
    else:
        cfg = get_config(model) if isinstance(model, str) else model
    if overrides:
        cfg = cfg.replace(**overrides)
    net = build_model(cfg)
    if weights is not None:
        ckpt_cfg, state = read_checkpoint(weights)
        load_state(net, state, source=str(weights))
    net.eval()
    return net


def save_checkpoint(path: str | os.PathLike, cfg, state_dict: dict, **extra) -> None:
    """Write model weights with their config, atomically (temp file + rename)."""
    from ..io import atomic_write

    payload = {"format": CHECKPOINT_FORMAT, "config": cfg.to_dict(), "state_dict": state_dict, **extra}
    with atomic_write(path, binary=True) as f:
        torch.save(payload, f)


def read_checkpoint(path: str | os.PathLike):
    """Return (config, state_dict) from a leanface weights file; one-line error otherwise."""
    from .config import config_from_dict

    path = str(path)
    if not os.path.isfile(path):
        raise LeanfaceError(f"{path}: weights file not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means "not our file"
        raise LeanfaceError(f"{path}: not a leanface weights file ({type(exc).__name__}); "
                            f"official weights must be imported with `leanface convert` first") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise LeanfaceError(f"{path}: not a leanface weights file; official weights must be imported "
                            f"with `leanface convert` first")
    return config_from_dict(payload["config"]), payload["state_dict"]


def load_state(net: nn.Module, state: dict, source: str) -> None:
    """Strict load with a one-line error listing what did not match."""
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shape = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shape:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if shape:
            k = shape[0]
            parts.append(f"{len(shape)} with wrong shape (e.g. {k}: file {tuple(state[k].shape)} "
                         f"vs model {tuple(own[k].shape)})")
        raise LeanfaceError(f"{source}: weights do not match the model: " + "; ".join(parts))
    net.load_state_dict(state, strict=True)


def _ensure_zoo() -> None:
    # Importing the zoo modules runs their @register_model decorators.
    from . import zoo  # noqa: F401
