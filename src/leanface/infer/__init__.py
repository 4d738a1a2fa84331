"""Inference: Detector, typed results, robust image reading."""
from .decode import decoder_for, nms
from .detector import DEFAULT_WEIGHTS, Detector
from .image import list_images, read_image, video_frames
from .results import Faces

__all__ = ["DEFAULT_WEIGHTS", "Detector", "Faces", "decoder_for", "list_images", "nms", "read_image", "video_frames"]
