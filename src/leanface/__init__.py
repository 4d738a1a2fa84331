"""leanface: efficient face detection and recognition under a compute budget."""
from .errors import LeanfaceError
from .infer import Detector, Faces, read_image
from .models import create_model, list_models
from .recognize import Embedder, Identifier, Recognizer, build_gallery

__version__ = "0.1.0"
__all__ = ["Detector", "Embedder", "Faces", "Identifier", "LeanfaceError", "Recognizer", "build_gallery", "create_model",
           "list_models", "read_image", "__version__"]
