"""leanface: efficient face detection and recognition under a compute budget.

The public names load on first use (PEP 562): `import leanface` and `leanface detect` on ONNX Runtime
never import torch, which alone takes longer than a whole detection.
"""
import importlib

from .errors import LeanfaceError

__version__ = "0.1.0"
_EXPORTS = {"Detector": "infer", "Faces": "infer", "read_image": "infer", "create_model": "models",
            "list_models": "models", "Embedder": "recognize", "Identifier": "recognize", "Recognizer": "recognize",
            "build_gallery": "recognize"}
__all__ = ["LeanfaceError", "__version__", *_EXPORTS]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'leanface' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
