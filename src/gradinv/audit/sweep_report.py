"""``gradinv report SWEEP_DIR``: how much each defense buys against each attack, and at what cost.

Reads a sweep's results.jsonl and writes ``SWEEP_DIR/report/``: summary.json (mean and spread
over seeds of PSNR and SSIM per attack, batch size, defense and strength, with the accuracy of
the short federation trained with that defense when the sweep has ``[utility]``), one plot per
defense and metric (metric vs strength, one line per attack and batch size, error bars = std
over seeds, the undefended level as a dashed line; matplotlib when installed, the ``plots``
extra, else gradinv's own PNG plot without axes), a privacy-utility plot per metric (needs
matplotlib; see ``privacy_utility``), a grid of example reconstructions per batch size (see
``defense_grid``) and index.html showing them together.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from statistics import fmean, pstdev

from ..checks import GradinvError
from ..report.defense_grid import write_reconstruction_grids
from ..report.levels import level_of
from ..report.page import images, page, paragraph, section, table
from ..report.plots import curve_colour, pyplot
from ..report.png import line_plot, write_png
from ..report.privacy_utility import rounds_label, utility_by_level, write_privacy_utility
from .sweep import RESULTS, read_results

METRICS = {"mean_psnr": "mean PSNR (dB)", "mean_ssim": "mean SSIM"}
# The label leak, a column each (mean over seeds): how many of each class, which classes.
LABEL_METRICS = ("label_accuracy", "label_existence_accuracy")


def load_results(sweep_dir: str | Path) -> list[dict]:
    """The sweep's finished units (the last line of each id) that succeeded; a line without a
    kind (written before utility units existed) is an attack run."""
    if not (Path(sweep_dir) / RESULTS).exists():
        raise GradinvError(_not_a_sweep(Path(sweep_dir)))
    return [line for line in read_results(sweep_dir).values()
            if line["status"] == "ok" and "point" in line]


def _not_a_sweep(folder: Path) -> str:
    """Why ``folder`` is no sweep folder, and where to look instead: users hand ``report`` an
    attack or audit folder (which has its own report) or the folder their sweeps are in."""
    if not folder.exists():
        return f"{folder} does not exist (give the SWEEP_DIR that 'gradinv sweep' wrote)"
    if not folder.is_dir():
        return f"{folder} is a file, not a sweep folder (give the SWEEP_DIR 'gradinv sweep' wrote)"
    if (folder / "report.html").exists():
        return (f"{folder} is not a sweep folder: it holds its own report, "
                f"{folder / 'report.html'}")
    inside = sorted(str(p.parent) for p in folder.glob(f"*/{RESULTS}"))
    if inside:
        return f"{folder} holds no {RESULTS}; the sweeps in it: {', '.join(inside)}"
    return f"{folder} holds no {RESULTS} (run 'gradinv sweep' first)"


def summarise(lines: list[dict], utility: dict[tuple, dict] | None = None) -> list[dict]:
    """One row per (defense, setting, strength, attack, batch size): mean and std over seeds,
    and the test accuracy of the level's short federation (None without one)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for line in lines:
        p = line["point"]
        key = (p["defense"], p["setting"], p["strength"], p["attack"], p["batch_size"])
        groups[key].append(line["metrics"][p["attack"]])
    rows = []
    for (defense, setting, strength, attack, batch_size), scores in groups.items():
        row = {"defense": defense, "setting": setting, "strength": strength, "attack": attack,
               "batch_size": batch_size, "seeds": len(scores)}
        for metric in METRICS:
            values = [s[metric] for s in scores if s.get(metric) is not None]
            row[metric] = fmean(values) if values else None
            row[f"{metric}_std"] = pstdev(values) if len(values) > 1 else 0.0
        for metric in LABEL_METRICS:  # None in lines written before label existence was scored
            values = [s[metric] for s in scores if s.get(metric) is not None]
            row[metric] = fmean(values) if values else None
        row["utility_accuracy"] = (utility or {}).get(level_of(row), {}).get("accuracy")
        rows.append(row)
    return rows


def write_sweep_report(sweep_dir: str | Path) -> Path:
    """Write SWEEP_DIR/report/ and return the path of its index.html."""
    lines = load_results(sweep_dir)
    attacks = [x for x in lines if x["kind"] == "attack"]
    utility = utility_by_level([x for x in lines if x["kind"] == "utility"])
    rows = summarise(attacks, utility)
    if not rows:
        raise GradinvError(f"no finished run in {sweep_dir}/results.jsonl to report")
    out = Path(sweep_dir) / "report"
    out.mkdir(exist_ok=True)
    (out / "summary.json").write_text(json.dumps(rows, indent=2))
    plots = []
    for defense in dict.fromkeys(r["defense"] for r in rows if r["defense"] != "none"):
        for metric in METRICS:
            name = f"{metric}-{defense}.png"
            _plot(out / name, rows, defense, metric)
            plots.append(name)
    tradeoffs = _privacy_utility_plots(out, rows, utility) if utility else []
    grids = write_reconstruction_grids(out, attacks, Path(sweep_dir))
    index = out / "index.html"
    index.write_text(_html(Path(sweep_dir).name, rows, plots,
                           _utility_section(utility, tradeoffs), grids))
    return index


def _curves(rows: list[dict], defense: str, metric: str) -> dict[str, tuple[list, list, list]]:
    """label -> (strengths, means, stds) of one defense, sorted by strength."""
    curves = {}
    for attack, b in dict.fromkeys((r["attack"], r["batch_size"]) for r in rows):
        points = sorted((r["strength"], r[metric], r[f"{metric}_std"]) for r in rows
                        if r["defense"] == defense and (r["attack"], r["batch_size"]) == (attack, b)
                        and r[metric] is not None)
        if points:
            curves[f"{attack} B={b}"] = tuple(map(list, zip(*points)))
    return curves


def _undefended(rows: list[dict], metric: str) -> dict[str, float]:
    return {f"{r['attack']} B={r['batch_size']}": r[metric] for r in rows
            if r["defense"] == "none" and r[metric] is not None}


def _plot(path: Path, rows: list[dict], defense: str, metric: str) -> None:
    curves, baseline = _curves(rows, defense, metric), _undefended(rows, metric)
    plt = pyplot()
    if plt is None:
        write_png(path, line_plot({k: v[1] * (2 if len(v[1]) == 1 else 1)
                                   for k, v in curves.items()}, log=False))
        return
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for i, (label, (x, mean, std)) in enumerate(curves.items()):
        ax.errorbar(x, mean, yerr=std, marker="o", capsize=3, label=label, color=curve_colour(i))
        if label in baseline:
            ax.axhline(baseline[label], linestyle="--", color=curve_colour(i), alpha=0.6)
    strengths = [v for xs, _, _ in curves.values() for v in xs if isinstance(v, (int, float))]
    if strengths and min(strengths) > 0 and max(strengths) >= 100 * min(strengths):
        ax.set_xscale("log")  # noise sigmas, epsilons: decades apart
    setting = next(r["setting"] for r in rows if r["defense"] == defense)
    ax.set_xlabel(f"{defense} {setting or ''}".strip())
    ax.set_ylabel(METRICS[metric])
    ax.set_title(f"{METRICS[metric]} vs {defense}"
                 + (" (dashed: undefended)" if baseline else " (no undefended run in the grid)"))
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _privacy_utility_plots(out: Path, rows: list[dict], utility: dict[tuple, dict]) -> list[str]:
    """The names of the privacy-utility plots written (none without matplotlib)."""
    names = [f"privacy_utility-{metric}.png" for metric in METRICS]
    return [name for name, metric in zip(names, METRICS) if write_privacy_utility(
        out / name, rows, metric, ylabel=METRICS[metric], rounds=rounds_label(utility))]


def _utility_section(utility: dict[tuple, dict], plots: list[str]) -> str:
    """The privacy-utility plots, or why there are none."""
    if not utility:
        return ("<p>No privacy-utility plot: the sweep has no <code>[utility]</code> table (a "
                "short federation per defense level).</p>")
    if not plots:
        return ("<p>No privacy-utility plot: it needs matplotlib (pip install "
                "'gradinv[plots]'); the table's utility_accuracy column holds the numbers.</p>")
    return (f"<p>Utility: the test accuracy a short federation ({rounds_label(utility)} "
            "rounds) reaches when its clients apply the defense; a short training run, not a "
            "converged model.</p>" + images(plots))


def _html(name: str, rows: list[dict], plots: list[str], utility: str,
          grids: list[str]) -> str:
    columns = ["attack", "batch_size", "defense", "setting", "strength", "seeds", "mean_psnr",
               "mean_psnr_std", "mean_ssim", "mean_ssim_std", *LABEL_METRICS, "utility_accuracy"]
    grid = (images(grids) if grids else paragraph(
        "No reconstruction grid: the run folders keep no images (runs from before gradinv kept "
        "images.safetensors)."))
    return page(f"gradinv sweep {name}", [
        section("Leakage vs defense strength",
                paragraph("Mean over seeds (std: spread over seeds) of each attack's leakage, "
                          "per defense strength."), images(plots)),
        section("Privacy vs utility", utility),
        section("Example reconstructions",
                paragraph("Rows: defense levels (undefended first); columns: the ground truth, "
                          "then each attack; the run of the smallest seed."), grid),
        section("Table", paragraph("Label number accuracy: the share of each batch's labels "
                                   "the attack used right, as a multiset (how many of each "
                                   "class); label existence accuracy: the share of the classes "
                                   "whose presence it called right. Std: the spread over "
                                   "seeds."), table(rows, columns)),
    ])
