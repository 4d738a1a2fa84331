"""Export: ONNX in the official SCRFD output layout, float or statically quantised int8."""
from .onnx import export_onnx
from .quantize import CALIBRATION_METHODS, QuantReport, calibration_files, export_int8

__all__ = ["CALIBRATION_METHODS", "QuantReport", "calibration_files", "export_int8", "export_onnx"]
