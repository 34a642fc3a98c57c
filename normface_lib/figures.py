"""Figures shared by the notebooks and the book: the model diagram, image grids, landmark overlays, curves.

Notebooks call these; they compute nothing that is reported as a result.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def _np_image(img) -> np.ndarray:
    """``[3,H,W]``/``[1,H,W]``/``[H,W]`` tensor or array in ``[0,1]`` → ``[H,W,3]`` float array for imshow."""
    if isinstance(img, torch.Tensor):
        img = img.detach().float().cpu().numpy()
    img = np.asarray(img, dtype=np.float32)
    if img.ndim == 3 and img.shape[0] in (1, 3):
        img = img.transpose(1, 2, 0)
    if img.ndim == 2:
        img = img[..., None]
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, -1)
    return np.clip(img, 0, 1)


def image_grid(images: Sequence, titles: Sequence[str] | None = None, ncols: int = 8, size: float = 1.6,
               landmarks: Sequence | None = None, row_labels: Sequence[str] | None = None, suptitle: str | None = None,
               landmark_size: float = 3.0):
    """Show images (each ``[3,H,W]`` in ``[0,1]``) in a grid, optionally with 68-point landmarks ``[68,2]`` (pixels)
    drawn on top. Returns the matplotlib figure."""
    import matplotlib.pyplot as plt

    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows * 1.05), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        for s in ax.spines.values():
            s.set_visible(False)
        if k >= n:
            continue
        ax.imshow(_np_image(images[k]), interpolation="nearest" if _np_image(images[k]).shape[0] < 48 else "antialiased")
        if landmarks is not None and landmarks[k] is not None:
            lm = landmarks[k]
            lm = lm.detach().cpu().numpy() if isinstance(lm, torch.Tensor) else np.asarray(lm)
            ax.scatter(lm[:, 0], lm[:, 1], s=landmark_size, c="#00e5ff", linewidths=0)
        if titles is not None and k < len(titles):
            ax.set_title(titles[k], fontsize=8)
    if row_labels is not None:
        for r, label in enumerate(row_labels[:nrows]):
            axes[r, 0].set_ylabel(label, fontsize=9)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig


def model_diagram(ax=None, encoder_name: str = "FaceNet (frozen)", feature_dim: int = 1792):
    """Draw the model of the paper's Figure 3 as boxes and arrows (our own drawing).

    Photo → frozen encoder → identity features → shared FC → {landmark MLP → landmarks, texture CNN → texture in the
    mean-shape frame} → differentiable spline warp → normalized face; the three training losses are marked.
    Returns the axes.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    if ax is None:
        _, ax = plt.subplots(figsize=(11, 4.2))
    ax.set_xlim(0, 11)
    ax.set_ylim(0, 4.2)
    ax.axis("off")

    def box(x, y, w, h, text, color):
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.04,rounding_size=0.12",
                                    fc=color, ec="#333333", lw=1.0))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=8.5)

    def arrow(x0, y0, x1, y1, style="-|>", color="#333333", ls="-"):
        ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle=style, mutation_scale=11, color=color, lw=1.1,
                                     linestyle=ls))

    box(0.1, 1.7, 1.2, 0.9, "input photo\n(any pose,\nlight, expression)", "#f2f2f2")
    box(1.6, 1.7, 1.4, 0.9, f"{encoder_name}\nencoder", "#d9e8fb")
    box(3.3, 1.7, 1.1, 0.9, f"identity\nfeatures\n{feature_dim}-D", "#fff2cc")
    box(4.7, 1.7, 0.9, 0.9, "FC +\nReLU", "#e2f0d9")
    box(6.0, 2.9, 1.5, 0.9, "landmark MLP\n→ L×2 points", "#e2f0d9")
    box(6.0, 0.2, 1.5, 0.9, "texture CNN\nFC→14×14×256\n→ 5×5 deconvs", "#e2f0d9")
    box(7.9, 1.7, 1.3, 0.9, "spline warp\n(thin-plate)", "#fce4d6")
    box(9.5, 1.7, 1.4, 0.9, "normalized face\n(frontal, neutral,\neven light)", "#f2f2f2")
    arrow(1.3, 2.15, 1.6, 2.15)
    arrow(3.0, 2.15, 3.3, 2.15)
    arrow(4.4, 2.15, 4.7, 2.15)
    arrow(5.6, 2.3, 6.0, 3.3)
    arrow(5.6, 2.0, 6.0, 0.65)
    arrow(7.5, 3.3, 7.9, 2.4)
    arrow(7.5, 0.65, 7.9, 1.9)
    arrow(9.2, 2.15, 9.5, 2.15)
    ax.text(7.55, 3.55, "landmark loss", fontsize=7.5, color="#c00000")
    ax.text(7.55, 0.25, "texture loss\n(mean-shape frame)", fontsize=7.5, color="#c00000")
    arrow(10.2, 1.7, 2.3, 1.7 - 0.0001, style="-|>", color="#c00000", ls="--")
    ax.text(5.2, 1.45, "identity (FaceNet) loss: encoder features of the output vs the input",
            fontsize=7.5, color="#c00000", ha="center")
    ax.text(1.65, 2.7, "no gradient updates", fontsize=7.5, color="#1f4e79")
    ax.text(4.7, 3.9, "decoder (trained on frontal, neutral faces)", fontsize=8.5, color="#385723")
    return ax


def plot_curves(log_rows: Sequence[dict], keys: Sequence[str], ax=None, smooth: int = 1, title: str | None = None):
    """Plot training curves from logged rows (dicts with ``step`` and the given ``keys``); ``smooth`` is a moving
    average window. Returns the axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.2))
    for k in keys:
        pts = [(r["step"], r[k]) for r in log_rows if k in r and r[k] is not None]
        if not pts:
            continue
        x, y = map(np.asarray, zip(*pts))
        if smooth > 1 and len(y) >= smooth:
            y = np.convolve(y, np.ones(smooth) / smooth, mode="valid")
            x = x[smooth - 1:]
        ax.plot(x, y, label=k, lw=1.2)
    ax.set_xlabel("step")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return ax


#: Marker colour of a comparison by its verdict (see :mod:`normface_lib.study.verdicts`).
VERDICT_COLOURS = {"better": "#2e7d32", "worse": "#c62828"}


def forest_plot(series: dict, labels: Sequence[str], higher_is_better: bool, ax=None, xlabel: str = "difference",
                title: str | None = None):
    """Differences with their 95 % intervals, one row per label and one marker shape per series (e.g. clean and
    hard photos), a zero line, and an arrow under the axis saying which side is better. Filled markers are findings
    (the verdict "better" in green, "worse" in red); open grey markers: no difference detectable.

    Args:
        series: name → list of comparisons (dicts with ``difference``, ``ci`` ``[lo, hi]`` and ``verdict``, as the
            seed study stores them), each list in the order of ``labels``.
        labels: one per row. higher_is_better: whether a positive difference is the better side.
        ax: axes to draw on (default: a new figure sized to the rows). xlabel, title: axis label and title.

    Returns the axes.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 0.45 * len(labels) * max(1, len(series)) ** 0.5 + 1.2))
    shapes = ("o", "s", "^", "D")
    n = len(series)
    for k, (name, comps) in enumerate(series.items()):
        y = np.arange(len(comps)) + (k - (n - 1) / 2) * 0.22
        for yi, c in zip(y, comps):
            colour = VERDICT_COLOURS.get(c["verdict"], "#777777")
            ax.plot([c["ci"][0], c["ci"][1]], [yi, yi], color=colour, lw=1.4)
            ax.plot(c["difference"], yi, shapes[k % len(shapes)], color=colour, ms=6,
                    mfc=colour if c["verdict"] in VERDICT_COLOURS else "white")
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8.5)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel, fontsize=9)
    lo, hi = ax.get_xlim()
    ax.annotate("better →" if higher_is_better else "← better", xy=(0.98 if higher_is_better else 0.02, -0.22),
                xycoords="axes fraction", ha="right" if higher_is_better else "left", fontsize=9, color="#2e7d32")
    if n > 1:
        from matplotlib.lines import Line2D

        ax.legend([Line2D([], [], marker=shapes[k % len(shapes)], color="#333333", ls="") for k in range(n)],
                  list(series), fontsize=8, loc="best")
    if title:
        ax.set_title(title, fontsize=9.5)
    return ax
