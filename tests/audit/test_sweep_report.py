"""Sweeps with [utility] (a short federation per defense level) and the report built on them:
the privacy-utility plot, the reconstruction grid and the numbers the page shows."""
import json
import struct

import pytest

from gradinv.audit.sweep_report import write_sweep_report
from gradinv.audit.config import read_toml
from gradinv.audit.sweep import expand, run_sweep
from gradinv.types import GradinvError

SWEEP = """
[base]
model = "lenet"
image_size = 8
channels = 1
device = "cpu"
hyperparameters = { iterations = 2, restarts = 1 }

[grid]
attack = ["gi", "dlg"]
seed = [1, 0]
[grid.defense]
none = {}
prune = { rate = [0.9, 0.5] }

[utility]
model = "convnet"
width = 4
rounds = 2
num_clients = 4
clients_per_round = 2
batch_size = 4
test_images = 50
"""


def _png_size(path):
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def _lines(folder):
    return [json.loads(t) for t in (folder / "results.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    (root / "s.toml").write_text(SWEEP)
    run_sweep(root / "s.toml", root / "out", progress=False)
    return root


def test_utility_units_follow_the_grid_and_base(tmp_path):
    (tmp_path / "s.toml").write_text(SWEEP)
    units = [u for u in expand(read_toml(tmp_path / "s.toml")) if u.kind == "utility"]
    assert [u.id for u in units] == ["utility__none", "utility__prune-rate=0.9",
                                     "utility__prune-rate=0.5"]
    assert units[1].point == {"defense": "prune", "setting": "rate", "strength": 0.9}
    assert units[1].config["defenses"] == [{"name": "prune", "settings": {"rate": 0.9}}]
    assert units[0].config["image_size"] == 8 and units[0].config["channels"] == 1  # from base
    assert units[0].config["model"] == "convnet"  # [utility]'s own value wins
    (tmp_path / "s.toml").write_text(SWEEP.replace('model = "convnet"\nwidth = 4\n', ""))
    plain = next(u for u in expand(read_toml(tmp_path / "s.toml")) if u.kind == "utility")
    assert plain.config["model"] == "lenet"  # by default the audited architecture trains


@pytest.mark.parametrize("table,message", [
    ('[utility]\nround = 2', "utility.*unknown setting 'round'"),
    ('[utility]\nrounds = 0', "utility.*rounds"),
    ('[utility]\ndefenses = ["prune"]', "defenses come from"),
    ('[grid.defense]\ndpsgd = { max_grad_norm = [1.0] }\n[utility]\nmodel = "convnet"',
     "dpsgd needs per-example gradients"),
])
def test_bad_utility_table_fails_before_anything_runs(table, message, tmp_path):
    (tmp_path / "s.toml").write_text(f'[base]\nimage_size = 8\n{table}\n')
    with pytest.raises(GradinvError, match=message):
        run_sweep(tmp_path / "s.toml", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_sweep_writes_one_utility_line_per_level_and_resumes(sweep):
    lines = _lines(sweep / "out")
    utility = {x["id"]: x for x in lines if x["kind"] == "utility"}
    assert len(lines) == 3 * 2 * 2 + 3 and len(utility) == 3
    assert all(x["status"] == "ok" for x in lines)
    none = utility["utility__none"]
    assert none["point"] == {"defense": "none", "setting": None, "strength": None}
    metrics = none["metrics"]
    assert metrics["rounds"] == 2 and len(metrics["accuracy_history"]) == 2
    assert metrics["accuracy"] == metrics["accuracy_history"][-1] and 0 <= metrics["accuracy"] <= 1
    assert run_sweep(sweep / "s.toml", sweep / "out", progress=False) == []  # nothing re-run


def test_failing_federation_is_recorded_as_failed(tmp_path, monkeypatch):
    from gradinv.fl import federation

    def broken(self, **kw):
        raise RuntimeError("federation crashed")

    monkeypatch.setattr(federation.Federation, "run", broken)
    (tmp_path / "s.toml").write_text(SWEEP.replace("seed = [1, 0]", "seed = [0]").replace(
        'attack = ["gi", "dlg"]', 'attack = ["gi"]').replace("[0.9, 0.5]", "[0.9]"))
    lines = run_sweep(tmp_path / "s.toml", tmp_path / "out", progress=False)
    failed = [x for x in lines if x["kind"] == "utility"]
    assert [x["status"] for x in failed] == ["failed", "failed"]
    assert failed[0]["error"] == "RuntimeError: federation crashed"


def test_report_shows_leakage_against_the_short_federations_accuracy(sweep):
    page = write_sweep_report(sweep / "out")
    report = page.parent
    utility = {x["point"]["strength"]: x["metrics"]["accuracy"] for x in _lines(sweep / "out")
               if x["kind"] == "utility"}
    rows = json.loads((report / "summary.json").read_text())
    assert len(rows) == 2 * 3
    assert all(r["utility_accuracy"] == utility[r["strength"]] for r in rows)
    text = page.read_text()
    for name in ("privacy_utility-mean_psnr.png", "privacy_utility-mean_ssim.png",
                 "reconstructions-B1.png"):
        width, height = _png_size(report / name)
        assert width >= 200 and height >= 150 and name in text
    assert f"{utility[0.9]:.4g}" in text and "short federation (2 rounds" in text


def test_grid_without_matplotlib_is_gradinvs_own_png(sweep, monkeypatch):
    from gradinv.report import defense_grid, plots, privacy_utility
    monkeypatch.setattr(plots, "pyplot", lambda: None)
    monkeypatch.setattr(privacy_utility, "pyplot", lambda: None)
    lines = [x for x in _lines(sweep / "out") if x.get("kind") == "attack"]
    out = sweep / "fallback"
    out.mkdir()
    (name,) = defense_grid.write_reconstruction_grids(out, lines, sweep / "out")
    # 3 levels x (truth, gi, dlg) images of 8 px at scale 3, 2 px padding
    assert _png_size(out / name) == (3 * 26 + 2, 3 * 26 + 2)
    assert not privacy_utility.write_privacy_utility(out / "p.png", [], "mean_psnr",
                                                     ylabel="", rounds="2")


def test_report_reads_results_written_before_utility_units(tmp_path):
    line = {"id": "gi__none__B1__seed0", "status": "ok", "folder": "gone",
            "point": {"attack": "gi", "defense": "none", "setting": None, "strength": None,
                      "batch_size": 1, "seed": 0},
            "metrics": {"gi": {"mean_psnr": 12.0, "mean_ssim": 0.1}}}
    (tmp_path / "results.jsonl").write_text(json.dumps(line) + "\n")
    text = write_sweep_report(tmp_path).read_text()
    assert "no <code>[utility]</code> table" in text and "No reconstruction grid" in text


def test_report_has_a_column_per_label_leak_score(tmp_path):
    """Mean over seeds of the label number and existence accuracy; None (shown '-') in lines
    written before the existence accuracy was scored."""
    def line(seed, number, existence=None):
        metrics = {"mean_psnr": 12.0, "mean_ssim": 0.1, "label_accuracy": number,
                   **({} if existence is None else {"label_existence_accuracy": existence})}
        return {"id": f"gi__none__B4__seed{seed}", "status": "ok", "folder": "gone",
                "point": {"attack": "gi", "defense": "none", "setting": None, "strength": None,
                          "batch_size": 4, "seed": seed}, "metrics": {"gi": metrics}}
    (tmp_path / "results.jsonl").write_text("".join(
        json.dumps(x) + "\n" for x in (line(0, 0.5, 0.8), line(1, 1.0, 1.0))))
    page = write_sweep_report(tmp_path)
    (row,) = json.loads((page.parent / "summary.json").read_text())
    assert row["label_accuracy"] == 0.75 and row["label_existence_accuracy"] == 0.9
    assert "<th>label existence acc.</th>" in page.read_text()
    (tmp_path / "results.jsonl").write_text(json.dumps(line(0, 0.5)) + "\n")
    (row,) = json.loads((write_sweep_report(tmp_path).parent / "summary.json").read_text())
    assert row["label_accuracy"] == 0.5 and row["label_existence_accuracy"] is None


def test_privacy_utility_names_each_level_once_and_points_that_share_an_accuracy():
    """Levels of equal accuracy share one top tick; only their points get their own label."""
    from gradinv.report import privacy_utility
    from gradinv.report.plots import pyplot
    rows = [{"attack": a, "batch_size": 1, "defense": d, "setting": s, "strength": v,
             "utility_accuracy": acc, "mean_psnr": psnr}
            for a in ("gi", "idlg")
            for d, s, v, acc, psnr in (("none", None, None, 0.5, 30.0),
                                       ("prune", "rate", 0.5, 0.5, 20.0),
                                       ("prune", "rate", 0.9, 0.4, 10.0))]
    fig, ax = pyplot().subplots()
    privacy_utility._name_levels(ax, rows, "mean_psnr")
    (top,) = ax.child_axes
    ticks = [t.get_text() for t in top.xaxis.get_ticklabels()]
    assert ticks == ["none / prune 0.5", "prune 0.9"]
    assert sorted(t.get_text() for t in ax.texts) == ["none", "none", "prune 0.5", "prune 0.5"]
    pyplot().close(fig)
