"""Export: ONNX in the official SCRFD output layout."""
from .onnx import export_onnx

__all__ = ["export_onnx"]
