"""Training: ATSS assignment, SCRFD losses, the training loop (`train(TrainConfig(...), model, data)`)."""
from .assigner import Anchors, atss_assign, box_iou, make_anchors
from .losses import LossWeights, diou_loss, quality_focal_loss, scrfd_loss, smooth_l1
from .trainer import TrainConfig, TrainResult, WarmupStepSchedule, available_cores, cpu_has_bf16, train

__all__ = [
    "Anchors", "LossWeights", "available_cores", "cpu_has_bf16", "TrainConfig", "TrainResult", "WarmupStepSchedule", "atss_assign", "box_iou",
    "diou_loss", "make_anchors", "quality_focal_loss", "scrfd_loss", "smooth_l1", "train",
]
