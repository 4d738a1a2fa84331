"""The recognition stage: alignment, embedders (ONNX or leanface checkpoints), the Recognizer, and
identification against a gallery. Embedder networks live in leanface.models, their losses in
leanface.train; peer adapters (dlib) in leanface.recognize.peers."""
from .align import ARCFACE_TEMPLATE_112, align_faces, similarity_transform
from .embedder import Embedder
from .aggregate import AGGREGATORS, aggregate, qan_weights
from .gallery import (UNKNOWN, Gallery, Identifier, build_gallery, enrol_photos, open_store_gallery, setup_of,
                      store_setup)
from .open_set import ImpostorTail
from .search_index import SearchIndex
from .store import GalleryStore
from .quality import QualityScorer
from .recognizer import Recognizer, Verification, centre_crop, primary_face, require_threshold

__all__ = ["AGGREGATORS", "ARCFACE_TEMPLATE_112", "UNKNOWN", "Embedder", "Gallery", "GalleryStore", "Identifier",
           "ImpostorTail", "QualityScorer", "SearchIndex", "enrol_photos", "open_store_gallery", "setup_of", "store_setup",
           "Recognizer", "Verification", "aggregate", "align_faces", "qan_weights", "build_gallery", "centre_crop", "primary_face", "require_threshold",
           "similarity_transform"]
