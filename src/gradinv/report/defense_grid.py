"""The reconstruction grid of a sweep: what each attack recovers at each defense level, next to
the ground truth, from the images every run folder keeps (``run_folder.IMAGES``)."""
from __future__ import annotations

from pathlib import Path

import torch

from .levels import Level, level_label, level_of, sorted_levels
from .plots import pyplot
from .png import image_grid, write_png
from .run_folder import read_images

TRUTH = "ground truth"


def write_reconstruction_grids(out: Path, lines: list[dict], sweep_dir: Path) -> list[str]:
    """One PNG per batch size (rows: defense levels, undefended first; columns: ground truth,
    then each attack), showing each cell's smallest-seed run; the names of those written
    (none for runs whose folders keep no images)."""
    names = []
    for b in dict.fromkeys(line["point"]["batch_size"] for line in lines):
        cells = _cells([x for x in lines if x["point"]["batch_size"] == b], sweep_dir)
        if cells:
            names.append(f"reconstructions-B{b}.png")
            _draw(out / names[-1], cells, f"reconstructions, batch size {b} (smallest seed)")
    return names


def _cells(lines: list[dict], sweep_dir: Path) -> dict[tuple[Level, str], torch.Tensor]:
    """(level, column) -> images of the smallest-seed run of each (level, attack)."""
    cells: dict[tuple[Level, str], torch.Tensor] = {}
    for line in sorted(lines, key=lambda x: x["point"]["seed"]):
        level, attack = level_of(line["point"]), line["point"]["attack"]
        if (level, attack) in cells or "folder" not in line:
            continue
        images = read_images(_folder(line["folder"], sweep_dir))
        if images is None or attack not in images:
            continue
        cells[level, attack] = images[attack]
        if TRUTH in images:
            cells.setdefault((level, TRUTH), images[TRUTH])
    return cells


def _folder(recorded: str, sweep_dir: Path) -> Path:
    """A run's folder as recorded, or under this SWEEP_DIR/runs when the sweep was run from
    another directory (or the sweep folder was moved)."""
    path = Path(recorded)
    return path if path.exists() else sweep_dir / "runs" / path.name


def _draw(path: Path, cells: dict[tuple[Level, str], torch.Tensor], title: str) -> None:
    levels = sorted_levels(level for level, _ in cells)
    attacks = list(dict.fromkeys(c for _, c in cells if c != TRUTH))
    columns = [TRUTH, *attacks] if any(c == TRUTH for _, c in cells) else attacks
    blank = torch.full_like(next(iter(cells.values())), 0.5)  # a run that failed: grey
    plt = pyplot()
    if plt is None:  # gradinv's own PNG, without labels: one row per level
        write_png(path, image_grid([torch.cat([cells.get((lv, c), blank) for c in columns])
                                    for lv in levels], scale=3))
        return
    batch = len(blank)
    fig, axes = plt.subplots(len(levels), len(columns), squeeze=False,
                             figsize=(0.8 + len(columns) * max(1.3, 0.8 * batch),
                                      0.6 + 1.2 * len(levels)))
    for i, level in enumerate(levels):
        for j, column in enumerate(columns):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.imshow(image_grid([cells.get((level, column), blank)], scale=1, pad=1),
                      interpolation="nearest")
            if i == 0:
                ax.set_title(column, fontsize=9)
            if j == 0:
                ax.set_ylabel(level_label(level), fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
