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
from leanface.train.config import TrainConfig

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
    train = serial.from_dict(TrainConfig, state["train_config"])
    # Every saved value comes back as it was; fields added since take their defaults.
    assert _subset(_tuples(state["train_config"]), train.to_dict())
    assert config_from_dict(state["model_config"]).to_dict() == _tuples(state["model_config"])


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
