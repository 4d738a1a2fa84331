"""The model registry: one record per family, zoo names -> configs, one factory.

A family module (scrfd.py, eresfd.py, extd.py) registers itself when `leanface.models` is imported:

    register_family(Family("scrfd", "detect", SCRFDConfig, network("scrfd", "SCRFD"), DistanceDecoder.for_config,
                           presets))

    @register_model
    def scrfd_500m() -> SCRFDConfig: ...

    model = create_model("scrfd_500m", weights="w.pt")

This module imports nothing from the rest of the package but `errors`, `files` and `outputs` (it is the leaf
every layer looks families up in); what a family needs to train lives in `leanface.train`.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import importlib
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from torch import nn

from .. import serial
from ..errors import LeanfaceError
# The tags of our own files: the checkpoint format, and the metadata key of an exported ONNX file that
# holds the model config (cfg.to_dict() as JSON); the output guard recognises our files by them.
from ..outputs import CHECKPOINT_FORMAT, ONNX_CONFIG_KEY  # noqa: F401 - re-exported


class ModelConfig:
    """What every family's frozen config dataclass shares (mixed in): copies with changes, and JSON."""

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        import json

        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict):
        """The inverse of `to_dict` (leanface.serial: the one reader of frozen configs)."""
        return serial.from_dict(cls, d)


class CropModelConfig(ModelConfig):
    """Mixed into the configs of networks on aligned face crops (embedders, quality nets): no landmarks."""

    @property
    def has_landmarks(self) -> bool:
        return False


@dataclass(frozen=True)
class Postprocess:
    """Test-time settings of a detector family: from candidates to the faces returned.

    score_thr: candidates below it are dropped (SSD families: at or below). nms_thr: greedy NMS IoU.
    pre_nms_topk: only the k best candidates enter NMS (None: all). max_faces: detections kept
    after NMS (None: all). nms_offset: 1 for the "+1 pixel" area convention. clip_before_nms: clip
    candidates to the image before NMS (mmdet's test path) rather than after.
    """

    score_thr: float = 0.5
    nms_thr: float = 0.4
    pre_nms_topk: int | None = None
    max_faces: int | None = None
    nms_offset: float = 0.0
    clip_before_nms: bool = True

    def replace(self, **changes) -> "Postprocess":
        """These settings with `changes` applied; a change of None keeps the family's value."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


@dataclass(frozen=True)
class Preset:
    """A detector family's test-time settings for one use: the network input and the post-processing.

    size: long side of the network input (None: the original size, padded to a multiple of 32);
    letterbox: pad to size x size as an official test pipeline does.
    """

    postprocess: Postprocess
    size: int | None = 640
    letterbox: bool = False


# "detect": what `Detector()` and `leanface detect` use (confident faces); "eval": the family's official
# WIDER FACE test settings (`leanface eval`): every candidate a PR curve needs.
PRESETS = ("detect", "eval")


@dataclass(frozen=True)
class Family:
    """Everything the package needs to know about one model family.

    config_cls: frozen config dataclass with `from_dict`/`to_dict` and a `family` field equal to `name`.
    build: config -> nn.Module. decoder: config -> callable turning the network's export outputs into
    per-image candidates (boxes, scores, landmarks or None) in input pixels (detection only).
    presets: the family's test-time settings by use (`PRESETS`; detection only).
    """

    name: str
    task: str
    config_cls: type
    build: Callable[[object], "nn.Module"]
    decoder: Callable[[object], Callable] | None = None
    presets: dict[str, Preset] = field(default_factory=dict)

    def preset(self, use: str) -> Preset:
        if use not in self.presets:
            raise LeanfaceError(f"{self.name} has no {use!r} preset; it has: {', '.join(self.presets) or 'none'}")
        return self.presets[use]


_FAMILIES: dict[str, Family] = {}
_MODELS: dict[str, Callable[[], object]] = {}


def network(module: str, cls: str) -> Callable[[object], "nn.Module"]:
    """A family's builder: `leanface.models.nets.<module>.<cls>(config)`, imported when a network is first
    built, so that looking families up (and inference on ONNX Runtime) never imports torch."""
    def build(cfg):
        return getattr(importlib.import_module(f"{__package__}.nets.{module}"), cls)(cfg)

    build.__qualname__ = f"{module}.{cls}"
    return build


def register_family(family: Family) -> Family:
    if family.name in _FAMILIES:
        raise ValueError(f"model family {family.name!r} registered twice")
    _FAMILIES[family.name] = family
    return family


def register_model(fn: Callable[[], object]) -> Callable[[], object]:
    """Register a zero-argument function returning a model config under the function's name.

    The name may be overridden by a `model_name` attribute on the function (for names such as 'scrfd_2.5g').
    """
    name = getattr(fn, "model_name", fn.__name__)
    if name in _MODELS:
        raise ValueError(f"model {name!r} registered twice")
    _MODELS[name] = fn
    return fn


def get_family(name: str) -> Family:
    if name not in _FAMILIES:
        raise LeanfaceError(f"unknown model family {name!r}; known: {', '.join(sorted(_FAMILIES))}")
    return _FAMILIES[name]


def list_families(task: str | None = None) -> list[str]:
    return sorted(n for n, f in _FAMILIES.items() if task is None or f.task == task)


def config_from_dict(d: dict):
    """Inverse of `cfg.to_dict()` for every registered family."""
    return get_family(d["family"]).config_cls.from_dict(d)


def onnx_config(metadata: dict):
    """The model config a leanface ONNX export carries in its metadata (`export_onnx`), or None for a foreign
    file; every runtime class reads it here."""
    import json

    return config_from_dict(json.loads(metadata[ONNX_CONFIG_KEY])) if ONNX_CONFIG_KEY in metadata else None


def list_models(pattern: str = "*") -> list[str]:
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))


def get_config(name: str):
    """A zoo name, or the path of a JSON config file (`cfg.to_json()`, e.g. a searched model)."""
    if name.lower().endswith(".json"):
        return _config_file(name)
    if name not in _MODELS:
        raise LeanfaceError(f"unknown model {name!r}; known: {', '.join(list_models())}")
    return _MODELS[name]()


def _config_file(path: str):
    import json

    try:
        with open(path) as f:
            return config_from_dict(json.load(f))
    except FileNotFoundError:
        raise LeanfaceError(f"{path}: model config file not found") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise LeanfaceError(f"{path}: not a leanface model config ({type(exc).__name__}: {exc})") from None


def build_model(cfg) -> "nn.Module":
    return get_family(cfg.family).build(cfg)


def create_model(model, weights: str | os.PathLike | None = None, **overrides) -> "nn.Module":
    """Build a model from a zoo name or a config and optionally load leanface weights.

    `overrides` replace top-level config fields (e.g. head=...). With `model=None` the config
    is read from the weights file itself.
    """
    state = None
    if model is None:
        if weights is None:
            raise LeanfaceError("create_model needs a model name, a config, or a weights file")
        cfg, state = read_checkpoint(weights)
    else:
        cfg = get_config(model) if isinstance(model, str) else model
    if overrides:
        cfg = cfg.replace(**overrides)
    net = build_model(cfg)
    if weights is not None:
        load_state(net, read_checkpoint(weights)[1] if state is None else state, source=str(weights))
    net.eval()
    return net


def untrained_model_check(model, weights, random_init: bool, bundled: str):
    """What a runtime class (Detector, Embedder) does with `model` when no weights are given: the bundled
    model's name means its bundled weights (returns None: load the bundled file); another model is refused
    unless random_init (timing only: an untrained network finds and matches nothing)."""
    if weights is not None or random_init:
        return model
    if model == bundled:
        return None
    if model is not None:
        name = model if isinstance(model, str) else getattr(model, "name", "this model")
        raise LeanfaceError(f"{name}: no trained weights given; pass weights= (--weights), or random_init=True "
                            f"(--random-init) to run it untrained (timing only: it finds nothing)")
    return None


def save_checkpoint(path: str | os.PathLike, cfg, state_dict: dict, **extra) -> None:
    """Write model weights with their config, atomically (temp file + rename)."""
    from ..files import atomic_write

    import torch

    payload = {"format": CHECKPOINT_FORMAT, "config": cfg.to_dict(), "state_dict": state_dict, **extra}
    with atomic_write(path, binary=True) as f:
        torch.save(payload, f)


def read_checkpoint(path: str | os.PathLike):
    """Return (config, state_dict) from a leanface weights file; one-line error otherwise."""
    import torch

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


def load_state(net: "nn.Module", state: dict, source: str) -> None:
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

