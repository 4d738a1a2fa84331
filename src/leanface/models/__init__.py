"""Models: typed configs, the zoo, one factory."""
from .config import MobileNetConfig, PAFPNConfig, ResNetConfig, SCRFDConfig, SCRFDHeadConfig, config_from_dict
from .registry import (create_model, get_config, list_models, read_checkpoint, register_family, register_model,
                       save_checkpoint)

__all__ = [
    "MobileNetConfig", "PAFPNConfig", "ResNetConfig", "SCRFDConfig", "SCRFDHeadConfig", "config_from_dict",
    "create_model", "get_config", "list_models", "read_checkpoint", "register_family", "register_model",
    "save_checkpoint",
]
