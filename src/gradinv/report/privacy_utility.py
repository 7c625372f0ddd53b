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
    marker series per attack and batch size; the defense levels are named along the top.
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
    _name_levels(ax, [r for r in rows if r[metric] is not None], metric)
    ax.set_xlabel(f"test accuracy after {rounds} rounds (short federation)")
    ax.set_ylabel(ylabel)
    ax.set_title(f"leakage vs utility (utility: a short training run, {rounds} rounds)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _name_levels(ax, rows: list[dict], metric: str) -> None:
    """Each defense level named once, on a top axis at its accuracy (every attack's point of a
    level lies on that dotted vertical), levels of equal accuracy on one tick and, there, each
    point named too (to the right and left in turn): a label beside every point piled up."""
    names: dict[float, list[str]] = {}
    for r in rows:
        if r["utility_accuracy"] is not None:
            label = level_label(level_of(r))
            if label not in names.setdefault(r["utility_accuracy"], []):
                names[r["utility_accuracy"]].append(label)
    for accuracy, shared in names.items():
        ax.axvline(accuracy, color="0.85", linestyle=":", linewidth=1, zorder=0)
        for r in (r for r in rows if r["utility_accuracy"] == accuracy and len(shared) > 1):
            k = shared.index(level_label(level_of(r)))
            ax.annotate(shared[k], (accuracy, r[metric]), textcoords="offset points",
                        xytext=(6 if k % 2 == 0 else -6, 8 * (k // 2)), fontsize=7,
                        ha="left" if k % 2 == 0 else "right", va="center")
    top = ax.secondary_xaxis("top")
    top.set_xticks(list(names), labels=[" / ".join(n) for n in names.values()], rotation=90,
                   fontsize=7)
