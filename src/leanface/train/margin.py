"""Classification losses of face embedders (the "embed" task), vectorised over the batch.

Every loss but plain softmax works on cosines: embeddings x and class weights w_j L2-normalised,
cos θ_j = ŵ_j · x̂, scale s, margin m (RECOGNITION_FACTS 2):

- softmax: logits W x (no normalisation, no margin);
- cosface: s · (cos θ_j − m·[j = y]);
- arcface: target s · cos(θ_y + m), or s · (cos θ_y − m · sin(π − m)) once θ_y + m passes π;
- arcnegface (Song et al. 2019, as the authors' code defines it): the ArcFace target, and negatives
  s · (t_j · (1 + cos θ_j) − 1) with t_j = α · exp(−(cos θ_j − a)² / σ), where a is the margined target
  cosine above and t_j carries no gradient: negatives about as close as the margined positive weigh
  more (hard-negative mining), far ones and ones far above it (likely label noise) less.

Then softmax cross-entropy, optionally label-smoothed, plus RegularFace's exclusive regulariser
(the mean over classes of the largest cosine to another class's weight) when its weight is set.
Margins at s = 64, m = 0.5 often do not converge on small sets: `margin_warmup` epochs ramp the margin
linearly from 0 (a normalised softmax) to m.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LeanfaceError

KINDS = ("softmax", "cosface", "arcface", "arcnegface")


def _opt(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class MarginLoss:
    """The embed task's loss; set from `leanface train` with --set margin.<field>=VALUE."""

    kind: str = _opt(
        "arcnegface", "softmax, cosface, arcface or arcnegface (the paper's)")
    scale: float = _opt(64.0, "s, the logit scale of the cosine losses")
    margin: float = _opt(0.5, "m: angular margin (arcface, arcnegface) or cosine margin (cosface; 0.35 is usual)")
    alpha: float = _opt(1.2, "ArcNegFace's negative re-weighting peak")
    sigma: float = _opt(2.0, "ArcNegFace's re-weighting width")
    label_smoothing: float = _opt(0.0, "label smoothing of the cross-entropy")
    regularface: float = _opt(0.0, "weight of RegularFace's exclusive regulariser on the class weights")
    margin_warmup: float = _opt(2.0, "epochs over which the margin rises linearly from 0 to m")
    distill: float = _opt(0.0, "weight of the distillation term 1 - cos(student, teacher) (needs teacher)")
    teacher: str | None = _opt(None, "ONNX teacher embedder for distillation, with the student's embedding size "
                                     "(e.g. OpenCV SFace, 128-d, Apache-2.0)")
    online: bool = _opt(False, "function matching: the teacher embeds exactly the augmented (and mixed) view the "
                               "student trains on, every step (off: its embeddings of the clean crop and its "
                               "mirror, computed once and cached)")
    mixup: float = _opt(0.0, "share of the samples mixed with another face of the batch, half by mixup, half by "
                             "cutmix (needs online: only the teacher can say what a mixed face is)")
    occlusion: float = _opt(0.0, "share of the samples with a random grey or noise rectangle over the face")
    ce_weight: float = _opt(1.0, "weight of the margin loss on labelled faces (0: the teacher alone, so unlabelled "
                                 "pools and a single identity are enough)")
    exclude: str | None = _opt(None, "a pairs folder (LFW) whose people never train: each training face whose "
                                     "teacher embedding is closer than exclude_thr to one of its images is left out")
    exclude_thr: float = _opt(0.0, "cosine of the exclude filter; bench/lfw_filter.py sets it so that 1% of faces "
                                   "of known other people would be removed")

    def __post_init__(self):
        if self.kind not in KINDS:
            raise LeanfaceError(f"margin.kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.scale <= 0 or self.sigma <= 0 or self.margin < 0 or not 0 <= self.label_smoothing < 1:
            raise LeanfaceError(f"margin: scale and sigma must be positive, margin >= 0, label_smoothing in [0, 1); "
                                f"got {self}")
        for name in ("mixup", "occlusion"):
            if not 0 <= getattr(self, name) <= 1:
                raise LeanfaceError(f"margin.{name} must be in [0, 1], got {getattr(self, name)}")
        if self.mixup and not self.online:
            raise LeanfaceError("margin.mixup needs margin.online (the teacher must embed the mixed face)")
        if self.ce_weight < 0 or self.distill < 0:
            raise LeanfaceError(f"margin.ce_weight and margin.distill must be at least 0, got {self.ce_weight}, "
                                f"{self.distill}")

    def margin_at(self, epoch: float) -> float:
        """The margin used at (fractional) epoch `epoch` of the warm-up ramp."""
        if self.margin_warmup <= 0:
            return self.margin
        return self.margin * min(1.0, max(0.0, epoch / self.margin_warmup))


def margin_logits(cosine: torch.Tensor, labels: torch.Tensor, cfg: MarginLoss, margin: float | None = None) -> torch.Tensor:
    """(B, C) logits of the cosine losses from cosines (B, C) and labels (B,); margin defaults to cfg.margin."""
    m = cfg.margin if margin is None else margin
    s = cfg.scale
    cos = cosine.clamp(-1.0, 1.0)
    target = cos.gather(1, labels[:, None])
    onehot = torch.zeros_like(cos, dtype=torch.bool).scatter_(1, labels[:, None], True)
    if cfg.kind == "cosface":
        return s * torch.where(onehot, cos - m, cos)
    # ArcFace's target with its fallback past pi: cos(t + m) = cos t cos m - sin t sin m.
    sin = (1.0 - target * target).clamp_min(0.0).sqrt()
    margined = torch.where(target > math.cos(math.pi - m), target * math.cos(m) - sin * math.sin(m),
                           target - m * math.sin(math.pi - m))
    if cfg.kind == "arcface":
        return s * torch.where(onehot, margined, cos)
    if cfg.kind == "arcnegface":
        t = (cfg.alpha * torch.exp(-(cos - margined) ** 2 / cfg.sigma)).detach()
        return s * torch.where(onehot, margined, t * (1.0 + cos) - 1.0)
    raise LeanfaceError(f"margin_logits: {cfg.kind!r} has no cosine logits")


def exclusive_regularizer(weight: torch.Tensor) -> torch.Tensor:
    """RegularFace (Zhao et al. 2019): mean over classes of the largest cosine to another class's weight."""
    w = F.normalize(weight.float(), dim=1)
    cos = w @ w.T
    cos = cos - 3.0 * torch.eye(len(w), device=w.device, dtype=w.dtype)  # never pick oneself
    return cos.max(1).values.mean()


class ClassifierHead(nn.Module):
    """The class weights W (C, D) trained beside the embedder; forward(embeddings) -> (B, C) float32 cosines
    (or raw logits W x for plain softmax), computed outside autocast."""

    def __init__(self, num_classes: int, dim: int, kind: str):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, dim))
        nn.init.normal_(self.weight, std=0.01)
        self.kind = kind

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=emb.device.type, enabled=False):
            emb = emb.float()
            if self.kind == "softmax":
                return emb @ self.weight.T
            return F.normalize(emb, dim=1) @ F.normalize(self.weight, dim=1).T


class EmbedderTrainer(nn.Module):
    """Embedder + classifier head, the module the loop optimises; `model` is what model.pt holds.
    forward(x) -> {"embedding" (B, D) float32, "scores" (B, C): cosines, or logits for softmax, "weight": the
    class weights, for the regulariser}."""

    def __init__(self, model: nn.Module, num_classes: int, dim: int, kind: str):
        super().__init__()
        self.model = model
        self.head = ClassifierHead(num_classes, dim, kind)

    def forward(self, x: torch.Tensor) -> dict:
        emb = self.model(x).float()
        return {"embedding": emb, "scores": self.head(emb), "weight": self.head.weight}


def margin_loss(outputs: dict, labels: torch.Tensor, cfg: MarginLoss, epoch: float, head_weight: torch.Tensor,
                teacher: torch.Tensor | None = None) -> dict:
    """{"loss", "ce", "reg", "distill", "margin"} for one batch at (fractional) epoch `epoch`. Faces labelled -1
    (unlabelled or mixed) take no part in the margin loss."""
    m = cfg.margin_at(epoch)
    zero = outputs["embedding"].new_zeros(())
    ce = outputs["scores"].sum() * 0.0  # keeps the class weights in the graph: DDP expects every gradient
    labelled = labels >= 0
    if cfg.ce_weight and bool(labelled.any()):
        scores, y = outputs["scores"][labelled], labels[labelled]
        logits = scores if cfg.kind == "softmax" else margin_logits(scores, y, cfg, m)
        ce = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
    reg = exclusive_regularizer(head_weight) if cfg.regularface else zero
    distill = zero
    if cfg.distill and teacher is not None:
        distill = (1.0 - F.cosine_similarity(outputs["embedding"], teacher.float(), dim=1)).mean()
    loss = cfg.ce_weight * ce + cfg.regularface * reg + cfg.distill * distill
    return {"loss": loss, "ce": ce.detach(), "reg": reg.detach(), "distill": distill.detach(),
            "margin": ce.new_tensor(m)}
