"""The privacy-utility plot of a sweep: how much an attack still leaks against how accurate a
short federation trained with the same defense gets, one point per defense level."""
from __future__ import annotations

from pathlib import Path

from .levels import level_label, level_of
from .plots import curve_colour, pyplot


def utility_by_level(lines: list[dict]) -> dict[tuple, dict]:
    """The utility lines' metrics (accuracy, accuracy_history, rounds) per defense level."""
    return {level_of(line["point"]): line["metrics"] for line in lines}


def rounds_label(utility: dict[tuple, dict]) -> str:
    """How many rounds the short federations trained ('5', or '3/5' if they differ)."""
    return "/".join(str(r) for r in sorted({m["rounds"] for m in utility.values()}))


def write_privacy_utility(path: Path, rows: list[dict], metric: str, *, ylabel: str,
                          rounds: str) -> bool:
    """Leakage (mean over seeds, std error bars) vs the level's short-federation accuracy, one
    marker series per attack and batch size, each point labelled with its defense level.
    Needs matplotlib (axes and labels are the point of it): False, nothing written, without."""
    plt = pyplot()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(6.5, 4))
    series = dict.fromkeys((r["attack"], r["batch_size"]) for r in rows)
    for i, (attack, b) in enumerate(series):
        points = [r for r in rows if (r["attack"], r["batch_size"]) == (attack, b)
                  and r[metric] is not None and r["utility_accuracy"] is not None]
        if not points:
            continue
        ax.errorbar([r["utility_accuracy"] for r in points], [r[metric] for r in points],
                    yerr=[r[f"{metric}_std"] for r in points], marker="o", linestyle="none",
                    capsize=3, label=f"{attack} B={b}", color=curve_colour(i))
        for r in points:
            ax.annotate(level_label(level_of(r)), (r["utility_accuracy"], r[metric]),
                        textcoords="offset points", xytext=(4, 4), fontsize=7,
                        color=curve_colour(i))
    ax.set_xlabel(f"test accuracy after {rounds} rounds (short federation)")
    ax.set_ylabel(ylabel)
    ax.set_title(f"leakage vs utility (utility: a short training run, {rounds} rounds)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
