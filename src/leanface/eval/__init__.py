"""Evaluation: the official WIDER FACE protocol (easy/medium/hard AP) for any detector or prediction folder,
and the face-verification protocol (LFW View 2: 10-fold accuracy, TAR at FAR)."""
from .pairs_eval import evaluate_pairs, write_verification_report
from .plots import plot_pr_curves, plot_roc
from .report import evaluate_detector, write_report
from .verification import VerificationResult, roc_curve, tar_at_far, verification_protocol
from .submission import predict_images, read_prediction_file, read_predictions, write_prediction_file
from .widerface import FolderEvaluation, SettingResult, WiderResult, evaluate, evaluate_folder, voc_ap

__all__ = [
    "FolderEvaluation", "VerificationResult", "SettingResult", "WiderResult", "evaluate",
    "evaluate_detector", "evaluate_folder", "evaluate_pairs", "plot_roc", "write_verification_report", "plot_pr_curves",
    "predict_images", "read_prediction_file", "read_predictions", "voc_ap",
    "roc_curve", "tar_at_far", "verification_protocol", "write_prediction_file", "write_report",
]
