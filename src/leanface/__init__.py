"""leanface: efficient face detection under a compute budget."""
from .errors import LeanfaceError
from .infer import Detector, Faces, read_image
from .models import create_model, list_models

__version__ = "0.1.0"
__all__ = ["Detector", "Faces", "LeanfaceError", "create_model", "list_models", "read_image", "__version__"]
