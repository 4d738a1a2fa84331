"""Inference: Detector, the one post-processing path, typed results, robust image reading."""
from ..boxes import nms
from .detector import DEFAULT_ONNX, DEFAULT_WEIGHTS, Detector, onnx_session
from .image import list_images, read_image, sample_image, video_frames
from .postprocess import postprocess
from .results import Face, Faces

__all__ = ["DEFAULT_ONNX", "DEFAULT_WEIGHTS", "Detector", "Face", "Faces", "list_images", "nms", "onnx_session", "postprocess", "read_image",
           "sample_image", "video_frames"]
