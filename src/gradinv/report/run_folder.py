"""Self-describing result folders: config, metrics.json, image grid, the images themselves, loss
curve, report.html."""
from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save

from ..files import write_atomic
from ..version import __version__
from .page import esc, heading, page, paragraph, section, table
from .plots import image_table, line_chart
from .png import CURVE_COLOURS

IMAGES = "images.safetensors"
SCORED_CHANNELS = ("PSNR and SSIM compare images in the dataset's own channels: a grey "
                   "dataset attacked through a colour model is scored on the mean of the "
                   "reconstruction's channels, while grid.png and images.safetensors hold the "
                   "colour images the attack produced.")


@dataclass
class Row:
    """One line of the report: a labelled row of images, with optional metrics and loss curve."""

    label: str
    images: torch.Tensor
    metrics: dict | None = None
    loss_history: list[float] | None = None


def environment() -> dict:
    return {"gradinv": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "platform": platform.platform()}


def new_run_dir(root: str | Path, name: str) -> Path:
    """``root/<timestamp>-<name>`` (``-1``, ``-2``, ... appended when taken), never reusing an
    existing folder: creating it is the claim (``exist_ok=False``), so two workers starting
    the same second cannot both get the same one, as they could by checking first."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{stamp}-{name}"
    base.parent.mkdir(parents=True, exist_ok=True)
    path, k = base, 1
    while True:
        try:
            path.mkdir()
            return path
        except FileExistsError:
            path, k = base.with_name(f"{base.name}-{k}"), k + 1


def json_safe(value: object) -> object:
    """``value`` with every non-finite float replaced by None: strict JSON has no NaN or
    Infinity, and a diverged attack must still leave a metrics.json every reader can parse."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(json_safe(value), indent=2, default=str, allow_nan=False))


def write_run(folder: Path, *, config: dict, metrics: dict, rows: list[Row], title: str) -> Path:
    """Write every artefact of a run into ``folder`` and return the path of report.html."""
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "config.json", {**config, "environment": environment()})
    write_json(folder / "metrics.json", metrics)
    image_table(folder / "grid.png", [[r.images] for r in rows],
                row_labels=[r.label for r in rows])
    # Written as every other file is (safetensors' save_file makes it readable by its owner
    # only, and a run folder is for sharing).
    write_atomic(folder / IMAGES, save({r.label: r.images.detach().float().cpu().contiguous()
                                        for r in rows}))
    curves = {r.label: r.loss_history for r in rows if r.loss_history}
    line_chart(folder / "loss.png", {k: (range(1, len(v) + 1), v) for k, v in curves.items()},
               xlabel="iteration", ylabel="matching cost (best restart)", log=True,
               title="gradient matching cost")
    report = folder / "report.html"
    report.write_text(_html(title, config, rows, curves, metrics))
    return report


def read_images(folder: Path) -> dict[str, torch.Tensor] | None:
    """A run folder's images per row label (ground truth, then each attack, matched to it as in
    grid.png), for reports that lay out several runs; None for a folder without them."""
    path = Path(folder) / IMAGES
    return load_file(path) if path.exists() else None


def _leakage_rows(metrics: dict) -> list[dict]:
    """One table row per attack of ``metrics`` (metrics.json): its scores where there is a
    ground truth, and always the matching cost it reached and the labels it used, inferred
    from the update or given by the threat model (without a ground truth, all there is)."""
    return [{"row": label, **m, "labels": " ".join(map(str, m.get("labels", []))) + (
        " (inferred)" if m.get("labels_inferred") else " (given)" if "labels" in m else "")}
        for label, m in metrics.items()]


def _label_leak(metrics: dict) -> list[str]:
    """Which classes the batch holds and how many images of each, against what each attack
    used (inferred from the update, or given): the label leak on its own, as a section (none
    without a ground truth)."""
    scored = {label: m for label, m in metrics.items() if m.get("true_label_counts")}
    if not scored:
        return []
    true = next(iter(scored.values()))["true_label_counts"]
    shown = [c for c in range(len(true))
             if true[c] or any(m["label_counts"][c] for m in scored.values())]
    rows = [{"class": c, "true": true[c], **{label: m["label_counts"][c]
                                              for label, m in scored.items()}} for c in shown]
    how = "; ".join(f"{esc(label)}: {esc(_label_source(m))}" for label, m in scored.items())
    return [section("Label leak", paragraph(
        "Images per class in the batch and in each attack's labels (classes in neither are "
        "left out). Existence accuracy: the share of the classes whose presence is called "
        "right; number accuracy: the share of the batch's labels recovered, as a multiset "
        f"(iLRG's metrics). Labels: {how}."),
        table(rows, ["class", "true", *scored], headings=["class", "true", *scored]))]


def _label_source(metrics: dict) -> str:
    if not metrics.get("labels_inferred"):
        return "given by the threat model"
    method = metrics.get("label_method")
    return f"inferred ({method})" if method else "learned with the images"


LEAKAGE_COLUMNS = ["row", "mean_psnr", "mean_ssim", "best_psnr", "label_accuracy",
                   "label_existence_accuracy", "matching_cost", "labels"]


def _html(title: str, config: dict, rows: list[Row], curves: dict[str, list[float]],
          metrics: dict) -> str:
    ranges = "".join(
        f'<li><span style="color:rgb{colour}">&#9632;</span> {esc(k)}: {v[0]:.4g} &rarr; '
        f"{v[-1]:.4g} (min {min(v):.4g})</li>"
        for colour, (k, v) in zip(CURVE_COLOURS * 4, curves.items()))
    return page(title, [
        section("Images", paragraph("Rows, top to bottom: "
                                    f"{esc(', '.join(r.label for r in rows))}."),
                '<img src="grid.png" alt="image grid">'),
        section("Leakage", table(_leakage_rows(metrics), LEAKAGE_COLUMNS,
                                 headings=["", *map(heading, LEAKAGE_COLUMNS[1:])]),
                paragraph(esc(SCORED_CHANNELS))),
        *_label_leak(metrics),
        section("Matching cost per iteration (log scale, best restart)",
                f'<img src="loss.png" alt="loss curve"><ul>{ranges}</ul>'),
        section("Configuration", f"<pre>{esc(json.dumps(config, indent=2, default=str))}</pre>"),
        paragraph("Files: config.json, metrics.json, grid.png, images.safetensors (the images of "
                  "each row), loss.png."),
    ])
