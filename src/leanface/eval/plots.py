"""Precision/recall curves of a WIDER FACE evaluation, saved as PNG."""
from __future__ import annotations

import os

from ..files import save_figure
from ..data.wider_gt import SETTINGS
from .widerface import WiderResult


def plot_pr_curves(result: WiderResult, path: str | os.PathLike, title: str = "") -> None:
    """Draw the easy/medium/hard curves (recall on x, precision on y) with their APs into one PNG."""
    # Figure + Agg canvas directly: no pyplot global state, no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for setting, color in zip(SETTINGS, ("tab:green", "tab:orange", "tab:red")):
        r = result.settings[setting]
        counted = r.recall > 0  # leading thresholds with nothing recalled carry no curve
        ax.plot(r.recall[counted], r.precision[counted], color=color,
                label=f"{setting.capitalize()}  AP {100 * r.ap:.2f}  ({r.faces} faces)")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="recall", ylabel="precision")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    subtitle = f"WIDER FACE val: {result.images} images, {result.events} events"
    ax.set_title(f"{title}\n{subtitle}" if title else subtitle, fontsize=10)
    save_figure(fig, path, dpi=120)


def plot_roc(far, tar, path: str | os.PathLike, title: str = "") -> None:
    """A verification ROC: true accept rate against false accept rate (log scale), saved as PNG."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    far, tar = np.asarray(far), np.asarray(tar)
    keep = far > 0  # a log axis has no zero
    ax.plot(far[keep], tar[keep], color="tab:blue")
    low = min(max(far[keep].min(), 1e-4), 1e-2) if keep.any() else 1e-4
    ax.set(xscale="log", xlim=(low, 1), ylim=(0, 1.01),
           xlabel="false accept rate", ylabel="true accept rate")
    ax.grid(alpha=0.3, which="both")
    ax.set_title(title, fontsize=10)
    save_figure(fig, path, dpi=120)
