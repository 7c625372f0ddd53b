"""Plots with real axes, labels and legends (matplotlib, the ``plots`` extra), falling back to
gradinv's own numpy PNG curves when matplotlib is not installed."""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import torch

from .png import CURVE_COLOURS, image_grid, line_plot, write_png


def pyplot() -> ModuleType | None:
    """matplotlib's pyplot on the file-only Agg backend, or None without the plots extra."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    return plt


def curve_colour(index: int) -> tuple[float, float, float]:
    """The i-th curve's colour, the same in matplotlib plots, PNG fallbacks and HTML keys."""
    return tuple(c / 255 for c in CURVE_COLOURS[index % len(CURVE_COLOURS)])  # type: ignore[return-value]


def line_chart(path: Path, series: dict[str, tuple[Sequence[float], Sequence[float]]], *,
               xlabel: str, ylabel: str, title: str = "", log: bool = False) -> None:
    """One line per label, (x, y) each, written to ``path`` as PNG."""
    plt = pyplot()
    if plt is None:
        # the fallback has no axes; a single point draws no line, so repeat it
        write_png(path, line_plot({k: list(y) * (2 if len(y) == 1 else 1)
                                   for k, (_, y) in series.items()}, log=log))
        return
    from matplotlib.ticker import MaxNLocator
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for i, (label, (x, y)) in enumerate(series.items()):
        ax.plot(x, y, label=label, color=curve_colour(i), marker="o" if len(x) <= 30 else None)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def log_chart(log: Path, path: Path, *, x: str, curves: dict[str, str], xlabel: str,
              ylabel: str, title: str, log_scale: bool = False) -> None:
    """The curves of a JSON-lines training log (one line per epoch or step) as a PNG beside
    it; ``curves`` maps each curve's label to its key, ``x`` is the key along the axis."""
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    line_chart(path, {label: ([line[x] for line in lines], [line[key] for line in lines])
                      for label, key in curves.items()},
               xlabel=xlabel, ylabel=ylabel, title=title, log=log_scale)


def image_table(path: Path, cells: list[list[torch.Tensor]], *, row_labels: Sequence[str],
                column_labels: Sequence[str] | None = None, title: str = "") -> None:
    """Batches of images in [0, 1], ``cells[row][column]`` each, laid out as a table with every
    row and column named (matplotlib); without matplotlib the same layout, unlabelled, in
    gradinv's own PNG (the report pages name the rows then)."""
    plt = pyplot()
    if plt is None:
        write_png(path, image_grid([torch.cat(row) for row in cells], scale=3))
        return
    batch = max(len(cell) for row in cells for cell in row)
    width = max(1.3, 0.8 * batch)
    fig, axes = plt.subplots(len(cells), len(cells[0]), squeeze=False,
                             figsize=(0.8 + len(cells[0]) * width, 0.6 + 1.2 * len(cells)))
    for i, row in enumerate(cells):
        for j, cell in enumerate(row):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.imshow(image_grid([cell], scale=1, pad=1), interpolation="nearest")
            if i == 0 and column_labels:
                ax.set_title(column_labels[j], fontsize=9)
            if j == 0:
                ax.set_ylabel(row_labels[i], fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
