"""One reader for every frozen config (leanface.serial): zoo configs, training and search settings, and the
records earlier versions wrote (the committed training states and search records) read back unchanged."""
import json

import pytest
import torch

from leanface import serial
from leanface.errors import LeanfaceError
from leanface.models import config_from_dict, get_config, list_models
from leanface.models.config import MobileNetConfig, ResNetConfig
from leanface.recognize.open_set import ImpostorTail
from leanface.search.driver import SearchSettings
from leanface.train.config import MOVED_TO_AUGMENT, AugmentConfig, TrainConfig

from .conftest import ROOT

STATES = sorted((ROOT / "training").glob("*/last.pt"))
SEARCHES = sorted((ROOT / "training").glob("*/search.json"))


@pytest.mark.parametrize("name", list_models())
def test_zoo_configs_round_trip_through_json(name):
    cfg = get_config(name)
    assert config_from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


@pytest.mark.parametrize("path", STATES, ids=[p.parent.name for p in STATES])
def test_earlier_training_states_read_back_unchanged(path):
    """What `--resume` compares: the saved TrainConfig and model config, as written by earlier versions."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    saved = state["train_config"]
    train = serial.from_dict(TrainConfig, saved)
    # Every saved value comes back as it was, the flat augmentation fields of older records inside `augment`;
    # fields added since take their defaults.
    kept = {k: v for k, v in saved.items() if k not in MOVED_TO_AUGMENT and not (k == "augment" and isinstance(v, bool))}
    assert _subset(_tuples(kept), train.to_dict())
    moved = {k: saved[k] for k in MOVED_TO_AUGMENT if k in saved}
    assert _subset(_tuples(moved), train.to_dict()["augment"])
    if isinstance(saved.get("augment"), bool):
        assert train.augment.enabled is saved["augment"]
    assert config_from_dict(state["model_config"]).to_dict() == _tuples(state["model_config"])


def test_flat_augmentation_records_take_the_nested_layout():
    """A record of the layout before TrainConfig.augment, written by hand: each value lands where it belongs."""
    old = {"epochs": 3, "img_size": 320, "crop_choices": [0.5, 1.0], "clip_border": False, "close_ups": 0.1,
           "augment": False, "lr": 0.02}
    cfg = serial.from_dict(TrainConfig, old)
    assert cfg == TrainConfig(epochs=3, lr=0.02, augment=AugmentConfig(
        img_size=320, crop_choices=(0.5, 1.0), clip_border=False, close_ups=0.1, enabled=False))
    assert serial.from_dict(TrainConfig, json.loads(json.dumps(cfg.to_dict()))) == cfg  # today's layout as it is


@pytest.mark.parametrize("path", SEARCHES, ids=[p.parent.name for p in SEARCHES])
def test_earlier_search_records_read_back(path):
    settings = SearchSettings.from_dict(json.loads(path.read_text())["settings"])
    assert isinstance(settings.trial.train, TrainConfig) and isinstance(settings.references, tuple)


def test_union_members_are_told_apart_by_their_tag():
    mobile = get_config("scrfd_500m")
    resnet = get_config("scrfd_2.5g")
    assert isinstance(config_from_dict(mobile.to_dict()).backbone, MobileNetConfig)
    assert isinstance(config_from_dict(resnet.to_dict()).backbone, ResNetConfig)


def test_defaults_fill_missing_keys_and_unknown_keys_are_refused():
    tail = ImpostorTail((0.1, 0.01), (0.3, 0.4), 0.3, 0.1, 0.05, 1000)
    d = tail.to_dict()
    del d["source"]  # written before the field existed
    assert ImpostorTail.from_dict(d) == tail
    with pytest.raises(LeanfaceError, match="unknown TrainConfig field"):
        serial.from_dict(TrainConfig, {"no_such_field": 1})


def _tuples(value):
    """A dict as `to_dict` of the read-back config returns it (tuples where JSON or pickle held lists)."""
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _subset(saved: dict, loaded: dict) -> bool:
    return all(_subset(v, loaded[k]) if isinstance(v, dict) else loaded[k] == v for k, v in saved.items())
