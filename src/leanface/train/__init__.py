"""Training: the generic loop (`train(TrainConfig(...), model, data)`), task adapters, per-family losses."""
from ..boxes import box_iou
from . import ssd_loss  # noqa: F401  (registers the SSD families' loss)
from .assigner import Anchors, atss_assign, make_anchors
from .detection import DetectionTask
from .adapter import TaskAdapter
from .average import average_weights
from ..data.augment import AugmentConfig
from .config import TrainConfig, TrainResult
from .cpu import cpu_has_bf16
from .loop import WarmupStepSchedule, train
from .margin import MarginLoss, exclusive_regularizer, margin_logits
from .losses import LossWeights, diou_loss, loss_for, quality_focal_loss, register_loss, scrfd_loss, smooth_l1

__all__ = [
    "AugmentConfig", "Anchors", "average_weights", "DetectionTask", "LossWeights", "MarginLoss", "exclusive_regularizer", "margin_logits", "TrainConfig", "TrainResult", "WarmupStepSchedule", "atss_assign",
    "box_iou", "cpu_has_bf16", "diou_loss", "loss_for", "make_anchors", "quality_focal_loss", "register_loss", "TaskAdapter",
    "scrfd_loss", "smooth_l1", "train",
]
