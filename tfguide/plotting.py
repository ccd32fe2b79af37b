"""Figure helpers. Each returns a matplotlib `Figure`; the caller saves it.

Figures are made with `matplotlib.figure.Figure` directly, not pyplot, so no
global state is touched and nothing opens a window: rendering is headless.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure


def _grid(n: int, ncols: int) -> tuple[int, int]:
    ncols = max(1, min(ncols, n))
    return int(np.ceil(n / ncols)), ncols


def history_curves(history: Mapping[str, Sequence[float]], title: str = "") -> Figure:
    """Plot training curves: one panel per metric, train and `val_` series together.

    Args:
        history: `keras.callbacks.History.history`, or any {name: values per epoch}.
    """
    names = [k for k in history if not k.startswith("val_")]
    fig = Figure(figsize=(4.2 * len(names), 3.3), layout="constrained")
    for i, name in enumerate(names):
        ax = fig.add_subplot(1, len(names), i + 1)
        epochs = np.arange(1, len(history[name]) + 1)
        ax.plot(epochs, history[name], marker=".", label="train")
        if f"val_{name}" in history:
            ax.plot(epochs, history[f"val_{name}"], marker=".", label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(name.replace("_", " "))
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return fig


def line_plot(series: Mapping[str, Sequence[float]], xlabel: str, ylabel: str,
              title: str = "", logy: bool = False, x: Sequence[float] | None = None,
              logx: bool = False) -> Figure:
    """Plot several named series against a shared x axis (step, epoch, time, a size)."""
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    for name, ys in series.items():
        ys = np.asarray(ys, dtype=float)
        xs = np.arange(len(ys)) if x is None else np.asarray(x)[: len(ys)]
        ax.plot(xs, ys, label=name)
    if logy:
        ax.set_yscale("log")
    if logx:
        ax.set_xscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def image_grid(images: np.ndarray, titles: Sequence[str] | None = None, ncols: int = 8,
               title: str = "", cmap: str = "gray") -> Figure:
    """Show images `(n, h, w)` or `(n, h, w, c)` in a grid, optionally titled."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    rows, cols = _grid(len(images), ncols)
    fig = Figure(figsize=(1.3 * cols, 1.45 * rows + (0.4 if title else 0)), layout="constrained")
    for i, image in enumerate(images):
        ax = fig.add_subplot(rows, cols, i + 1)
        lo, hi = float(image.min()), float(image.max())
        shown = image if image.ndim == 2 else (image - lo) / max(hi - lo, 1e-12)
        ax.imshow(shown, cmap=cmap if image.ndim == 2 else None, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def heatmap(matrix: np.ndarray, xlabels: Sequence[str] | None = None,
            ylabels: Sequence[str] | None = None, title: str = "", xlabel: str = "",
            ylabel: str = "", annotate: bool = False, cmap: str = "viridis", ax=None) -> Figure:
    """Draw a matrix as a colour map (attention weights, confusion matrices).

    Pass `ax` to draw into one panel of a larger figure.
    """
    matrix = np.asarray(matrix, dtype=float)
    if ax is None:
        size = min(9.0, 2.5 + 0.4 * max(matrix.shape))
        fig = Figure(figsize=(size + 1, size), layout="constrained")
        ax = fig.add_subplot()
    fig = ax.figure
    image = ax.imshow(matrix, cmap=cmap, aspect="auto")
    fig.colorbar(image, ax=ax, shrink=0.8)
    for labels, set_ticks, set_labels in ((xlabels, ax.set_xticks, ax.set_xticklabels),
                                          (ylabels, ax.set_yticks, ax.set_yticklabels)):
        if labels is not None:
            set_ticks(range(len(labels)))
            set_labels(labels, fontsize=8)
    if annotate:
        threshold = matrix.max() / 2 if matrix.size else 0
        for (i, j), value in np.ndenumerate(matrix):
            text = f"{value:.0f}" if float(value).is_integer() else f"{value:.2f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=7,
                    color="black" if value > threshold else "white")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    return fig


def misclassified(images: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray,
                  classes: Sequence[str], limit: int = 16, ncols: int = 8) -> Figure | None:
    """Show the first `limit` misclassified images, each titled "true → predicted".

    Returns None when there is no mistake to show.
    """
    wrong = np.flatnonzero(np.asarray(y_pred) != np.asarray(y_true))[:limit]
    if not len(wrong):
        return None
    titles = [f"{classes[y_true[i]]} → {classes[y_pred[i]]}" for i in wrong]
    return image_grid(images[wrong], titles, ncols=ncols,
                      title="Misclassified test images (true → predicted)")


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str],
                     title: str = "Confusion matrix") -> Figure:
    """Count (true, predicted) pairs and draw them as an annotated heatmap."""
    k = len(classes)
    counts = np.zeros((k, k), dtype=int)
    np.add.at(counts, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return heatmap(counts, xlabels=classes, ylabels=classes, title=title,
                   xlabel="predicted", ylabel="true", annotate=k <= 12, cmap="Blues")


def contour_paths(xx: np.ndarray, yy: np.ndarray, zz: np.ndarray,
                  paths: Mapping[str, np.ndarray], title: str = "", xlabel: str = "",
                  ylabel: str = "", optimum: Sequence[float] | None = None,
                  log_levels: bool = True) -> Figure:
    """Draw a loss surface as contours with optimisation paths `(steps, 2)` over it."""
    fig = Figure(figsize=(6.5, 5), layout="constrained")
    ax = fig.add_subplot()
    zz = np.asarray(zz, dtype=float)
    if log_levels:
        lo, hi = max(zz.min(), 1e-12), zz.max()
        levels = np.geomspace(lo, hi, 25)
    else:
        levels = 25
    contour = ax.contour(xx, yy, zz, levels=levels, cmap="viridis", linewidths=0.8)
    fig.colorbar(contour, ax=ax, label="loss")
    for name, path in paths.items():
        path = np.asarray(path, dtype=float)
        ax.plot(path[:, 0], path[:, 1], marker=".", markersize=3, linewidth=1.2, label=name)
    if optimum is not None:
        ax.plot(*optimum, marker="*", markersize=14, color="black", linestyle="none",
                label="closed form")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel,
           xlim=(xx.min(), xx.max()), ylim=(yy.min(), yy.max()))
    ax.legend(loc="upper right", fontsize=8)
    return fig


def scatter_2d(points: np.ndarray, labels: np.ndarray | None = None, title: str = "",
               xlabel: str = "", ylabel: str = "", ax=None) -> Figure:
    """Scatter 2-D points (a latent space, a toy data set), coloured by label.

    Pass `ax` to draw into one panel of a larger figure.
    """
    points = np.asarray(points, dtype=float)
    if ax is None:
        fig = Figure(figsize=(5.5, 4.8), layout="constrained")
        ax = fig.add_subplot()
    fig = ax.figure
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=8, alpha=0.7)
    else:
        sc = ax.scatter(points[:, 0], points[:, 1], c=labels, s=8, alpha=0.8, cmap="tab10")
        fig.colorbar(sc, ax=ax, label="label")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    return fig


def bar_chart(values: Mapping[str, float], ylabel: str, title: str = "", logy: bool = False,
              threshold: float | None = None,
              errors: Mapping[str, float] | None = None) -> Figure:
    """Draw one bar per named value, optionally with ± error bars and a threshold line."""
    fig = Figure(figsize=(max(4.5, 0.8 * len(values) + 2), 3.8), layout="constrained")
    ax = fig.add_subplot()
    names = list(values)
    ax.bar(names, [values[n] for n in names], color="tab:blue",
           yerr=None if errors is None else [errors[n] for n in names], capsize=4)
    if threshold is not None:
        ax.axhline(threshold, color="tab:red", linestyle="--", label=f"threshold {threshold:g}")
        ax.legend()
    if logy:
        ax.set_yscale("log")
    ax.set(title=title, ylabel=ylabel)
    ax.tick_params(axis="x", rotation=30)
    ax.grid(alpha=0.3, axis="y")
    return fig


def curves(series: dict[str, tuple], levels: dict[str, float], xlabel: str, ylabel: str,
           title: str) -> Figure:
    """Draw named (x, y) curves with dots, and named horizontal levels (baselines) behind them."""
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.add_subplot()
    for label, (x, y) in series.items():
        ax.plot(x, y, marker=".", label=label)
    for (label, level), style in zip(levels.items(), (":", "--", "-.")):
        ax.axhline(level, color="grey" if style == ":" else "black", linestyle=style, label=label)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    return fig

