"""Plots with real axes, labels and legends (matplotlib, the ``plots`` extra), falling back to
gradinv's own numpy PNG curves when matplotlib is not installed."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from .png import CURVE_COLOURS, line_plot, write_png


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
