"""Models: one registry record per family, typed configs, the zoo, one factory.

Importing the package registers every family (each module calls `register_family` and
`register_model` at import), so the registry is complete before anything looks a name up.
"""
from . import eresfd, extd, mobilefacenet, quality, scrfd  # noqa: F401  (registration)
from .mobilefacenet import MobileFaceNetConfig
from .config import MobileNetConfig, PAFPNConfig, ResNetConfig, SCRFDConfig, SCRFDHeadConfig
from .registry import (PRESETS, Family, Postprocess, Preset, build_model, config_from_dict, create_model, get_config, get_family,
                       list_families, list_models, read_checkpoint, register_family, register_model,
                       save_checkpoint)

__all__ = [
    "PRESETS", "Family", "MobileFaceNetConfig", "MobileNetConfig", "PAFPNConfig", "Postprocess", "Preset", "ResNetConfig", "SCRFDConfig", "SCRFDHeadConfig",
    "build_model", "config_from_dict", "create_model", "get_config", "get_family", "list_families", "list_models",
    "read_checkpoint", "register_family", "register_model", "save_checkpoint",
]
