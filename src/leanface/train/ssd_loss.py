"""The training loss of the SSD-style families (EResFD, EXTD): the official EXTD loss."""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ..boxes import box_iou, ssd_encode
from ..models.ssd import SSDAnchorConfig, ssd_priors
from .losses import register_loss


class SSDLoss:
    """The official EXTD training loss (S3FD matching, hard negative mining), for EResFD and EXTD alike.

    Matching per image: every face gets its best anchor; anchors with IoU >= 0.35 are positive; then
    S3FD's scale compensation adds as positives the N best remaining anchors with IoU in (0.1, 0.35),
    N = (#faces whose best IoU >= 0.35 + #faces whose best IoU >= 0.5) // 2. Classification: cross-entropy
    over the positives and the 3x as many hardest negatives; regression: smooth L1 (beta 1) on the SSD
    encoding of the positives. Both are summed and divided by the number of positives.
    """

    def __init__(self, anchors: SSDAnchorConfig, input_hw: tuple[int, int], device: torch.device | str = "cpu",
                 neg_pos: int = 3, thresholds: tuple[float, float, float] = (0.1, 0.35, 0.5)):
        self.variances = anchors.variances
        self.neg_pos = neg_pos
        self.thresholds = thresholds
        self.priors = torch.from_numpy(ssd_priors(input_hw, anchors)).to(device)
        self.prior_boxes = torch.cat([self.priors[:, :2] - self.priors[:, 2:] / 2,
                                      self.priors[:, :2] + self.priors[:, 2:] / 2], 1)
        self.scale = torch.tensor([input_hw[1], input_hw[0]] * 2, dtype=torch.float32, device=device)

    def match(self, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """boxes (G, 4) x1y1x2y2 input pixels -> labels (N,) 0/1 and regression targets (N, 4)."""
        n = len(self.priors)
        if len(boxes) == 0:
            return torch.zeros(n, dtype=torch.long, device=self.priors.device), self.priors.new_zeros(n, 4)
        low, positive, high = self.thresholds
        gt = boxes.float() / self.scale
        iou = box_iou(gt, self.prior_boxes, eps=0.0)
        best_prior_iou, best_prior = iou.max(1)
        best_iou, best_gt = iou.max(0)
        best_iou[best_prior] = 2.0
        for j, p in enumerate(best_prior.tolist()):  # in order, so a later face wins a shared anchor
            best_gt[p] = j
        labels = (best_iou >= positive).long()
        extra = (int((best_prior_iou >= positive).sum()) + int((best_prior_iou >= high).sum())) // 2
        pool = torch.where((best_iou > low) & (best_iou < positive), best_iou, torch.zeros_like(best_iou))
        top = pool.topk(min(extra, n)).indices if extra else best_iou.new_zeros(0, dtype=torch.long)
        labels[top[pool[top] > low]] = 1
        return labels, ssd_encode(gt[best_gt], self.priors, self.variances)

    def __call__(self, outputs: tuple[torch.Tensor, torch.Tensor], boxes: list[torch.Tensor],
                 landmarks=None, landmark_valid=None) -> dict[str, torch.Tensor]:
        """outputs: `forward(x)` of the model; boxes[b]: (G_b, 4) x1y1x2y2 input pixels (landmarks are unused).

        Returns scalars loss (to minimise), cls, box, kps (always 0) and num_pos.
        """
        loc, conf = (o.float() for o in outputs)
        matched = [self.match(b.to(self.priors.device)) for b in boxes]
        labels = torch.stack([m[0] for m in matched])
        targets = torch.stack([m[1] for m in matched])
        pos = labels > 0
        num_pos = pos.sum(1)
        ce = F.cross_entropy(conf.reshape(-1, 2), labels.reshape(-1), reduction="none").view_as(labels).float()
        mining = ce.detach().masked_fill(pos, 0.0)
        rank = mining.argsort(1, descending=True).argsort(1)
        neg = rank < (self.neg_pos * num_pos).clamp(max=labels.shape[1] - 1)[:, None]
        total = num_pos.sum().clamp(min=1).float()
        if dist.is_available() and dist.is_initialized():
            # DDP averages gradients over ranks: dividing by the mean positive count makes that the
            # whole batch's sum over its positives, as the official (DataParallel) runs compute it.
            dist.all_reduce(total)
            total = total / dist.get_world_size()
        loss_cls = ce[pos | neg].sum() / total
        loss_box = F.smooth_l1_loss(loc[pos], targets[pos], reduction="sum", beta=1.0) / total
        return {"loss": loss_cls + loss_box, "cls": loss_cls, "box": loss_box, "kps": loss_cls.new_zeros(()),
                "num_pos": num_pos.sum().float()}


def ssd_loss(cfg, input_hw: tuple[int, int], device: torch.device | str = "cpu", weights=None) -> SSDLoss:
    """The loss factory of the SSD families (see `register_loss`). The official loss has no weights to
    tune, so the trainer's LossWeights (SCRFD's) do not apply."""
    return SSDLoss(cfg.anchors, input_hw, device)


register_loss("eresfd", ssd_loss)
register_loss("extd", ssd_loss)
