"""Sweeps: grid expansion, one JSON line per run, resume, failures recorded, worker processes."""
import json
from pathlib import Path
import time

import pytest

from gradinv.cli import main
from gradinv.audit.config import read_toml
from gradinv.audit.sweep import expand_grid, run_sweep
from gradinv.types import GradinvError

SWEEP = """
[base]
model = "lenet"
image_size = 16
device = "cpu"
hyperparameters = { iterations = 2, restarts = 1 }

[grid]
attack = ["gi", "dlg"]
seed = [0]
[grid.defense]
none = {}
prune = { rate = [0.5] }
"""

# A short federation per defense level: 1 round of 2 of 3 clients, scored on 20 test images.
UTILITY = """
[utility]
model = "lenet"
rounds = 1
num_clients = 3
clients_per_round = 2
batch_size = 2
test_images = 20
"""


def _lines(folder):
    return [json.loads(t) for t in (folder / "results.jsonl").read_text().splitlines()]


def test_grid_expands_every_combination(tmp_path):
    (tmp_path / "s.toml").write_text(SWEEP)
    runs = expand_grid(read_toml(tmp_path / "s.toml"))
    assert [r.id for r in runs] == ["gi__none__B1__seed0", "gi__prune-rate=0.5__B1__seed0",
                                    "dlg__none__B1__seed0", "dlg__prune-rate=0.5__B1__seed0"]
    assert runs[1].config["defenses"] == [{"name": "prune", "settings": {"rate": 0.5}}]
    assert runs[1].point == {"attack": "gi", "defense": "prune", "setting": "rate",
                             "strength": 0.5, "batch_size": 1, "seed": 0}
    assert runs[0].point["defense"] == "none" and runs[0].point["strength"] is None
    fixed_victim = expand_grid({"base": {"model_seed": 0, "attack_seed": 0},
                                "grid": {"seed": [1, 2]}})
    assert [(r.config["model_seed"], r.config["seed"]) for r in fixed_victim] == [(0, 1), (0, 2)]
    assert all("attack_seed" not in r.config for r in fixed_victim)
    with pytest.raises(GradinvError, match="unknown sweep key 'atack'"):
        expand_grid({"grid": {"atack": ["gi"]}})
    with pytest.raises(GradinvError, match="rate must be"):  # checked before anything runs
        expand_grid({"grid": {"defense": {"prune": {"rate": [2.0]}}}})
    # the list is the strength, single values are fixed at every strength
    dp = expand_grid({"grid": {"defense": {"dp-noise": {"max_norm": 1.0, "epsilon": [2.0, 8.0]}}}})
    assert [r.point["strength"] for r in dp] == [2.0, 8.0] and dp[0].point["setting"] == "epsilon"
    assert dp[1].config["defenses"] == [{"name": "dp-noise",
                                         "settings": {"epsilon": 8.0, "max_norm": 1.0}}]
    with pytest.raises(GradinvError, match="varies rate, scope"):
        expand_grid({"grid": {"defense": {"prune": {"rate": [0.5], "scope": ["tensor"]}}}})


def test_sweep_records_failures_resumes_and_retries(tmp_path, monkeypatch, capsys):
    from gradinv.audit import batch
    real = batch.run_audit

    def flaky(config, **kw):
        if config.attack == "dlg" and config.defenses:
            raise RuntimeError("worker crashed")
        return real(config, **kw)

    (tmp_path / "s.toml").write_text(SWEEP)
    monkeypatch.setattr(batch, "run_audit", flaky)
    out = tmp_path / "sweep"
    assert main(["sweep", str(tmp_path / "s.toml"), "--out", str(out), "--quiet"]) == 2
    printed = capsys.readouterr()
    assert "4 run(s) done now (1 failed)" in printed.out
    assert "1 run(s) of the sweep failed" in printed.err  # a sweep with failures is no success
    lines = _lines(out)
    assert [x["status"] for x in lines] == ["ok", "ok", "ok", "failed"]
    assert lines[3]["error"] == "RuntimeError: worker crashed"
    assert "mean_psnr" in lines[0]["metrics"]["gi"] and len(list((out / "runs").iterdir())) == 3
    assert all(Path(x["folder"]).name.endswith(x["id"]) for x in lines[:3])  # findable by id

    assert run_sweep(tmp_path / "s.toml", out, progress=False) == []  # resumes: nothing left
    # run again without --retry-failed: the failure stands, and the status says so
    assert main(["sweep", str(tmp_path / "s.toml"), "--out", str(out), "--quiet"]) == 2
    printed = capsys.readouterr()
    assert "0 run(s) done now (0 failed), 1 earlier failed run(s) not retried" in printed.out
    assert "1 run(s) of the sweep failed" in printed.err
    monkeypatch.setattr(batch, "run_audit", real)
    retried = run_sweep(tmp_path / "s.toml", out, retry_failed=True, progress=False)
    assert [(x["id"], x["status"]) for x in retried] == [("dlg__prune-rate=0.5__B1__seed0", "ok")]
    assert len(_lines(out)) == 5
    # the sweep file changed: its results here are stale, so the folder is refused
    (tmp_path / "s.toml").write_text(SWEEP.replace("iterations = 2", "iterations = 3"))
    with pytest.raises(GradinvError, match="made with other settings"):
        run_sweep(tmp_path / "s.toml", out, progress=False)


def test_worker_processes_give_the_same_metrics(tmp_path):
    (tmp_path / "s.toml").write_text(SWEEP.replace('"gi", "dlg"', '"gi"') + UTILITY)
    local = run_sweep(tmp_path / "s.toml", tmp_path / "one", progress=False)
    spawned = run_sweep(tmp_path / "s.toml", tmp_path / "two", workers=2, progress=False)
    by_id = {x["id"]: x["metrics"] for x in spawned}
    assert len(local) == 4 and set(by_id) == {x["id"] for x in local}
    for x in local:
        if x["kind"] == "utility":
            assert x["metrics"] == by_id[x["id"]]
            continue
        ours, theirs = x["metrics"]["gi"], by_id[x["id"]]["gi"]
        assert ours["psnr"] == theirs["psnr"] and ours["mean_ssim"] == theirs["mean_ssim"]


def test_ray_gives_the_same_metrics_and_leaves_nothing_running(tmp_path, monkeypatch):
    import subprocess

    import torch
    pytest.importorskip("ray")
    from gradinv.audit.backends import ray_backend

    def ray_processes() -> set[str]:
        return set(subprocess.run(["pgrep", "-f", "raylet|gcs_server|ray::"],
                                  capture_output=True, text=True).stdout.split())

    before = ray_processes()  # another test's Ray (Flower's simulation) is not ours
    (tmp_path / "s.toml").write_text(SWEEP.replace("seed = [0]", "seed = [0, 1]").replace(
        '"gi", "dlg"', '"gi"') + UTILITY)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in each Ray task (one CPU each), so the sums agree bit for bit
    try:
        local = run_sweep(tmp_path / "s.toml", tmp_path / "local", progress=False)
    finally:
        torch.set_num_threads(threads)
    remote = run_sweep(tmp_path / "s.toml", tmp_path / "ray", workers=2, progress=False,
                       backend=ray_backend)
    assert len(local) == 6 and all(x["status"] == "ok" for x in remote)
    by_id = {x["id"]: x["metrics"] for x in remote}
    for x in local:
        if x["kind"] == "utility":  # the short federations run as Ray tasks too
            assert x["metrics"] == by_id[x["id"]]
            continue
        assert x["metrics"]["gi"]["psnr"] == by_id[x["id"]]["gi"]["psnr"]
        assert x["metrics"]["gi"]["ssim"] == by_id[x["id"]]["gi"]["ssim"]
    deadline = time.monotonic() + 30  # ray.shutdown() signals its processes; they exit soon
    while (left := ray_processes() - before) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, f"Ray processes left running: {left}"


@pytest.mark.parametrize("extra,message", [
    (["--address", "auto"], "only apply to --backend ray"),
    (["--workers", "0"], "workers must be"),
])
def test_bad_sweep_options_are_one_clear_line(extra, message, tmp_path, capsys):
    (tmp_path / "s.toml").write_text(SWEEP)
    code = main(["sweep", str(tmp_path / "s.toml"), "--out", str(tmp_path / "o"), "--quiet",
                 *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_out_that_is_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "s.toml").write_text(SWEEP)
    (tmp_path / "afile").write_text("mine")
    assert main(["sweep", str(tmp_path / "s.toml"), "--out", str(tmp_path / "afile")]) == 2
    err = capsys.readouterr().err
    assert "is not a folder" in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "afile").read_text() == "mine"


def test_missing_sweep_file_is_a_clear_error(tmp_path, capsys):
    assert main(["sweep", str(tmp_path / "nope.toml"), "--out", str(tmp_path / "o")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_report_summarises_over_seeds_and_draws_each_defense(tmp_path, capsys):
    def line(attack, defense, strength, seed, psnr):
        return {"id": f"{attack}{defense}{strength}{seed}", "status": "ok",
                "point": {"attack": attack, "defense": defense, "setting": "rate" if strength
                          is not None else None, "strength": strength, "batch_size": 1,
                          "seed": seed},
                "metrics": {attack: {"mean_psnr": psnr, "mean_ssim": psnr / 100}}}

    lines = [line("gi", "none", None, 0, 20.0), line("gi", "prune", 0.5, 0, 14.0),
             line("gi", "prune", 0.5, 1, 16.0), line("gi", "prune", 0.9, 0, 10.0),
             {"id": "x", "status": "failed", "error": "E"}]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert main(["report", str(tmp_path)]) == 0
    assert "index.html" in capsys.readouterr().out
    rows = json.loads((tmp_path / "report" / "summary.json").read_text())
    (half,) = [r for r in rows if r["strength"] == 0.5]
    assert (half["seeds"], half["mean_psnr"], half["mean_psnr_std"]) == (2, 15.0, 1.0)
    assert (tmp_path / "report" / "mean_psnr-prune.png").read_bytes().startswith(b"\x89PNG")
    assert "mean_ssim-prune.png" in (tmp_path / "report" / "index.html").read_text()
    assert main(["report", str(tmp_path / "nothing")]) == 2
