"""TrainConfig is written once: its flags (and the nested augmentation config's) come from its fields, and what
the command line says is what the run gets."""
import argparse
import dataclasses

import pytest

from leanface.cli import _add_train, main
from leanface.errors import LeanfaceError
from leanface.train import AugmentConfig, TrainConfig
from leanface.train.config import check


def _config_of(argv, monkeypatch) -> TrainConfig:
    import leanface.train as training

    seen = []

    class Result:
        metrics, weights = {}, "model.pt"

    monkeypatch.setattr(training, "train", lambda cfg, model, data, **kw: seen.append(cfg) or Result())
    assert main(["train", "--model", "scrfd_500m", "--data", "unused", *argv]) == 0
    return seen[0]


def test_augmentation_flags_fill_the_nested_config(monkeypatch):
    cfg = _config_of(["--img-size", "320", "--crop-choices", "0.5,1", "--no-clip-border", "--close-ups", "0.2",
                      "--no-augment", "--set", "augment.flip=false", "--epochs", "3"], monkeypatch)
    assert cfg == TrainConfig(epochs=3, augment=AugmentConfig(img_size=320, crop_choices=(0.5, 1.0), clip_border=False,
                                                              close_ups=0.2, enabled=False, flip=False))
    assert _config_of([], monkeypatch) == TrainConfig()


def test_every_flag_is_a_field_and_says_what_the_field_says():
    parser = _add_train(argparse.ArgumentParser().add_subparsers())
    names = set(parser.parse_args(["--model", "m", "--data", "d"])._train_flags)
    flagged = {f"augment.{f.name}" for f in dataclasses.fields(AugmentConfig) if f.metadata.get("flag", True)}
    assert flagged == {"augment.img_size", "augment.crop_choices", "augment.clip_border", "augment.close_ups",
                       "augment.enabled"} and flagged <= names
    assert "augment" not in names and "loss" not in names  # groups: their own fields' flags, or --set
    help_text = " ".join(parser.format_help().split())
    for flag in ("--img-size IMG_SIZE", "--crop-choices CROP_CHOICES", "--no-clip-border", "--close-ups CLOSE_UPS",
                 "--no-augment"):
        assert flag in help_text
    close_ups = AugmentConfig.__dataclass_fields__["close_ups"].metadata["help"]
    assert TrainConfig.help("augment.close_ups") == close_ups and " ".join(close_ups.split()[:6]) in help_text


@pytest.mark.parametrize("augment, words", [(AugmentConfig(img_size=100), "multiple of 32"),
                                             (AugmentConfig(crop_choices=()), "crop_choices"),
                                             (AugmentConfig(close_ups=1.5), "close_ups")])
def test_bad_augmentation_settings_are_refused_before_training(augment, words):
    with pytest.raises(LeanfaceError, match=words):
        check(TrainConfig(augment=augment))
