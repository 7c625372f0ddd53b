"""gradinv audit --batch-updates on attacks the clients of a round in one batched pass (GI,
GI-z, GIAS), each getting what it gets alone; off (auto on a CPU) one after the other."""
import json
from pathlib import Path

import pytest

from gradinv.cli import main

SIMULATE = ["fl", "simulate", "--model", "lenet", "--dataset", "default", "--image-size", "16",
            "--clients", "4", "--clients-per-round", "3", "--rounds", "2", "--batch-size", "2",
            "--test-images", "20", "--unknown-labels", "--quiet"]
AUDIT = ["--attack", "gi,dlg", "--set", "gi.iterations=6", "--set", "dlg.iterations=1",
         "--restarts", "2", "--compile", "off", "--device", "cpu", "--quiet"]


def _updates(out):
    (folder,) = out.iterdir()
    lines = [json.loads(x) for x in (folder / "updates.jsonl").read_text().splitlines()]
    return folder, {(r["round"], r["client"], r["attack"]): r
                    for line in lines for r in line["rows"]}, lines


def test_a_rounds_clients_in_one_pass_score_as_one_by_one(tmp_path):
    record = tmp_path / "r"
    assert main([*SIMULATE, "--record", str(record)]) == 0
    assert main(["audit", str(record), *AUDIT, "--batch-updates", "on", "--out",
                 str(tmp_path / "together")]) == 0
    assert main(["audit", str(record), *AUDIT, "--out", str(tmp_path / "apart")]) == 0
    folder, together, lines = _updates(tmp_path / "together")
    _, apart, _ = _updates(tmp_path / "apart")
    assert together.keys() == apart.keys() and len(together) == 2 * 3 * 2
    for key, row in together.items():
        other = apart[key]
        assert row["batched_updates"] == (3 if key[2] == "gi" else 1)
        assert other["batched_updates"] == 1
        assert row["mean_psnr"] == pytest.approx(other["mean_psnr"], abs=1e-3)
        assert row["matching_cost"] == pytest.approx(other["matching_cost"], rel=1e-4)
        assert row["labels"] == other["labels"]
    # every update keeps its own run folder, with the settings to attack it again
    for line in lines:
        config = json.loads((Path(line["folder"]) / "config.json").read_text())
        assert (config["round"], config["client"]) == (line["round"], line["client"])
    summary = json.loads((folder / "leakage.json").read_text())
    assert len(summary["updates"]) == 12
    assert len(summary["clients"]) == len({client for _, client, _ in together})
