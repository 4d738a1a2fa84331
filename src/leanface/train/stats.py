"""The two statistics behind sample redistribution (SCRFD paper, Figs. 3 and 4): `leanface stats`.

1. Face-scale distribution: scale = sqrt(w * h) of a ground-truth box, in pixels after resizing
   its image so the long side is 640 (the VGA test protocol); reported as the cumulative share
   of faces below 8, 16, 32, ... px, per WIDER val setting and for the training faces.
2. Positive anchors per anchor size (16 ... 512 px) over training epochs, from the real ATSS
   assigner on the augmented 640 x 640 training targets, under two crop-scale sets (the
   paper's [0.3, 1.0] baseline and its [0.3, 2.0] sample redistribution).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.augment import CROP_CHOICES_BASELINE, CROP_CHOICES_SCRFD, AugmentConfig
from ..data.dataset import FaceDataset, image_size, training_faces
from ..data.readers import ImageFaces, load_training_data
from ..errors import LeanfaceError
from ..data import SETTINGS, load_ground_truth, present_images
from ..files import save_figure
from .assigner import atss_assign, make_anchors

SCALE_THRESHOLDS = (8, 16, 32, 64, 128, 256)
ANCHOR_SIZES = (16, 32, 64, 128, 256, 512)
# Paper, Fig. 3 (WIDER val hard, long side 640): share of faces smaller than 8 / 16 / 32 px.
PAPER_HARD_BELOW = {8: 0.1336, 16: 0.5185, 32: 0.7893}
# Paper, Fig. 4 (full WIDER train, one epoch): positive anchors at sizes 16 and 32, [0.3,1] -> [0.3,2].
PAPER_POSITIVES = {16: (72_300, 118_300), 32: (95_900, 115_100)}


@dataclass(frozen=True)
class ScaleDistribution:
    """Face scales of one set. scales: (N,) float64 px at long side `long_side`; images: images used."""

    name: str
    scales: np.ndarray
    images: int
    long_side: int = 640

    def share_below(self, px: float) -> float:
        return float((self.scales < px).mean()) if len(self.scales) else float("nan")


@dataclass(frozen=True)
class PositiveAnchors:
    """Positive anchors per anchor size (ANCHOR_SIZES order), summed over `epochs` epochs of `images` images."""

    name: str
    crop_choices: tuple[float, ...]
    counts: tuple[int, ...]
    faces: int
    images: int
    epochs: int


def scale_distribution(name: str, boxes_xyxy: list[np.ndarray], sizes: list[tuple[int, int]],
                       long_side: int = 640) -> ScaleDistribution:
    """boxes_xyxy[i]: (N_i, 4) pixels of image i of size sizes[i] = (width, height)."""
    scales = [np.sqrt(np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None))
              * long_side / max(w, h) for b, (w, h) in zip(boxes_xyxy, sizes)]
    return ScaleDistribution(name, np.concatenate(scales) if scales else np.zeros(0), len(sizes), long_side)


def val_scale_distributions(data: str | os.PathLike, long_side: int = 640) -> list[ScaleDistribution]:
    """Easy / medium / hard face scales of the WIDER val images present under `data` (a WIDER root)."""

    gt = load_ground_truth(data)
    present = present_images(gt, data)
    index = {k: i for i, k in enumerate(gt.keys)}
    sizes = [image_size(path) for _, path in present]
    out = []
    for setting in SETTINGS:
        boxes = []
        for key, _ in present:
            i = index[key]
            xywh = gt.boxes[i][gt.keep[setting][i]]
            boxes.append(np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1))
        out.append(scale_distribution(f"val {setting}", boxes, sizes, long_side))
    return out


def count_positive_anchors(images: list[ImageFaces], crop_choices: tuple[float, ...], name: str = "",
                           epochs: int = 1, size: int = 640, seed: int = 0, progress: bool = False) -> PositiveAnchors:
    """Run the training geometry (crop, resize, flip) and ATSS over `epochs` epochs; count positives per anchor size."""
    from tqdm import tqdm


    anchors = make_anchors(size, size)
    dataset = FaceDataset(images, AugmentConfig(img_size=size, crop_choices=tuple(crop_choices)), seed=seed)
    per_size = torch.zeros(len(ANCHOR_SIZES), dtype=torch.long)
    size_index = torch.tensor([ANCHOR_SIZES.index(int(s)) for s in anchors.sizes.tolist()])
    faces = 0
    keys = [(e, i) for e in range(epochs) for i in range(len(images))]
    for epoch, i in tqdm(keys, desc=f"ATSS {name}", unit="img", disable=not progress):
        t = dataset.targets_only(epoch, i)
        faces += len(t.boxes)
        assigned = atss_assign(anchors, torch.from_numpy(t.boxes))
        per_size += torch.bincount(size_index[assigned >= 0], minlength=len(ANCHOR_SIZES))
    return PositiveAnchors(name, tuple(crop_choices), tuple(int(c) for c in per_size), faces, len(images), epochs)


@dataclass(frozen=True)
class DataStats:
    scales: list[ScaleDistribution]
    positives: list[PositiveAnchors]


def compute_stats(data: str | os.PathLike, epochs: int = 1, seed: int = 0, progress: bool = True,
                  crop_sets: dict[str, tuple[float, ...]] | None = None) -> DataStats:
    """Both statistics for a WIDER root (val settings when its ground truth is there) or an annotation file."""
    data = Path(data)
    images = [im for im in load_training_data(data) if len(training_faces(im)[0])]
    if not images:
        raise LeanfaceError(f"{data}: no training image with a usable face")
    scales = []
    if data.is_dir() and (data / "WIDER_val").is_dir():
        scales = val_scale_distributions(data)
    scales.append(scale_distribution("train", [training_faces(im)[0] for im in images],
                                     [image_size(im) for im in images]))
    crop_sets = crop_sets or {"crop [0.3, 1.0]": CROP_CHOICES_BASELINE, "crop [0.3, 2.0]": CROP_CHOICES_SCRFD}
    positives = [count_positive_anchors(images, choices, name, epochs, seed=seed, progress=progress)
                 for name, choices in crop_sets.items()]
    return DataStats(scales, positives)


def format_stats(stats: DataStats) -> str:
    """Plain-text tables of both statistics, with the paper's figures for comparison."""
    lines = ["Face scale sqrt(w*h) at long side 640: share of faces below each size"]
    head = f"{'set':<12}{'images':>8}{'faces':>8}" + "".join(f"{'<' + str(t) + 'px':>9}" for t in SCALE_THRESHOLDS)
    lines.append(head)
    for d in stats.scales:
        lines.append(f"{d.name:<12}{d.images:>8}{len(d.scales):>8}"
                     + "".join(f"{100 * d.share_below(t):>8.2f}%" for t in SCALE_THRESHOLDS))
    lines.append(f"{'paper hard':<12}{3226:>8}{'':>8}"
                 + "".join(f"{100 * PAPER_HARD_BELOW[t]:>8.2f}%" if t in PAPER_HARD_BELOW else f"{'':>9}"
                           for t in SCALE_THRESHOLDS))
    lines.append("")
    p0 = stats.positives[0]
    lines.append(f"Positive ATSS anchors per anchor size, {p0.epochs} epoch(s) of {p0.images} training images")
    lines.append(f"{'crop scales':<18}{'faces':>8}" + "".join(f"{s:>9}" for s in ANCHOR_SIZES) + f"{'total':>9}")
    for p in stats.positives:
        lines.append(f"{p.name:<18}{p.faces:>8}" + "".join(f"{c:>9}" for c in p.counts) + f"{sum(p.counts):>9}")
    if len(stats.positives) == 2:
        a, b = stats.positives
        lines.append(f"{'ratio':<18}{b.faces / max(a.faces, 1):>8.2f}"
                     + "".join(f"{y / x:>9.2f}" if x else f"{'-':>9}" for x, y in zip(a.counts, b.counts)))
    lines.append("paper (full train, 12,880 images): size 16: 72.3K -> 118.3K (x1.64); size 32: 95.9K -> 115.1K (x1.20)")
    return "\n".join(lines)


def plot_stats(stats: DataStats, out_dir: str | os.PathLike) -> list[Path]:
    """Write scale_cdf.png and positive_anchors.png under out_dir; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    paths = []
    fig, ax = plt.subplots(figsize=(6, 4))
    for d in stats.scales:
        s = np.sort(d.scales)
        ax.plot(s, np.arange(1, len(s) + 1) / max(len(s), 1), label=f"{d.name} ({len(s)} faces)")
    ax.scatter(list(PAPER_HARD_BELOW), list(PAPER_HARD_BELOW.values()), marker="x", color="k", label="paper, val hard")
    ax.set_xscale("log", base=2)
    ax.set_xlim(1, 1024)
    ax.set_xlabel("face scale sqrt(w*h), px at long side 640")
    ax.set_ylabel("cumulative share of faces")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    paths.append(save_figure(fig, out_dir / "scale_cdf.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    width = 0.8 / len(stats.positives)
    x = np.arange(len(ANCHOR_SIZES))
    for k, p in enumerate(stats.positives):
        ax.bar(x + (k - (len(stats.positives) - 1) / 2) * width, p.counts, width, label=p.name)
    ax.set_xticks(x, [str(s) for s in ANCHOR_SIZES])
    ax.set_xlabel("anchor size (px)")
    ax.set_ylabel(f"positive anchors / {stats.positives[0].epochs} epoch(s)")
    ax.legend()
    paths.append(save_figure(fig, out_dir / "positive_anchors.png"))
    return paths


