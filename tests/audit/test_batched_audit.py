"""gradinv audit --batch-updates on attacks the clients of a round in one batched pass (GI,
GI-z, GIAS), each getting what it gets alone; off (auto on a CPU) one after the other."""
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from gradinv.audit.record import (BATCH_UPDATES, LeakageAuditConfig, batches_updates,
                                  round_tasks)
from gradinv.cli import main
from gradinv.files import FolderLock

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


def test_a_rounds_updates_are_attacked_at_most_eight_at_a_time():
    entries = [SimpleNamespace(round=r, client_id=c) for r in range(2) for c in range(10)]
    config = LeakageAuditConfig(record="r")
    units = [(t.round, t.clients) for t in round_tasks(config, entries, None, None, True)]
    assert units == [(0, tuple(range(8))), (0, (8, 9)), (1, tuple(range(8))), (1, (8, 9))]
    assert len(round_tasks(config, entries, None, None, False)) == 20
    assert [batches_updates(s, torch.device(d)) for s in BATCH_UPDATES for d in ("cpu", "cuda")
            ] == [False, True, True, True, False, False]


def test_an_audit_resumes_whether_batched_or_not_and_refuses_a_second_writer(tmp_path, capsys):
    record = tmp_path / "r"
    assert main([*SIMULATE, "--record", str(record)]) == 0
    audit = ["audit", str(record), "--iterations", "2", "--restarts", "1", "--device", "cpu",
             "--quiet", "--out", str(tmp_path / "o")]
    assert main([*audit, "--batch-updates", "off"]) == 0
    (folder,) = (tmp_path / "o").iterdir()
    (folder / "leakage.json").unlink()  # as if it had been interrupted at the very end
    capsys.readouterr()
    with FolderLock(folder, "the audit folder"):  # another audit is writing it
        assert main([*audit, "--batch-updates", "on"]) == 2
        assert "is being written by" in capsys.readouterr().err
    assert main([*audit, "--batch-updates", "on"]) == 0
    assert f"resuming the audit in {folder}" in capsys.readouterr().out
    assert list((tmp_path / "o").iterdir()) == [folder]
