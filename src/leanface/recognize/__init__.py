"""The recognition stage: what has no other home — face alignment now; the Recognizer and aggregation
of video frames are to come (embedders live in leanface.models, their losses in leanface.train)."""
from .align import ARCFACE_TEMPLATE_112, align_faces, similarity_transform

__all__ = ["ARCFACE_TEMPLATE_112", "align_faces", "similarity_transform"]
