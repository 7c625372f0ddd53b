"""The reconstruction grid of a sweep: what each attack recovers at each defense level, next to
the ground truth, from the images every run folder keeps (``run_folder.IMAGES``)."""
from __future__ import annotations

from pathlib import Path

import torch

from .levels import Level, level_label, level_of, sorted_levels
from .plots import image_table
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
    image_table(path, [[cells.get((level, c), blank) for c in columns] for level in levels],
                row_labels=[level_label(level) for level in levels], column_labels=columns,
                title=title)
