"""Files a user writes or keeps by hand: a mixed sweep's per-attack settings in [base], a run's
config.toml used from another folder, and results.jsonl with a line torn by a kill."""
import contextlib
import json

from gradinv.audit.config import SAVED_NOTE, read_toml
from gradinv.audit.sweep import RESULTS, expand_grid, read_results
from gradinv.cli import main
from gradinv.files import append_lines
from gradinv.fl import FederationConfig, simulate


def test_a_mixed_sweep_gives_each_attack_its_own_settings_from_base():
    runs = expand_grid({"base": {"attack_settings": {"gias": {"lr": 1e-4}},
                                 "hyperparameters": {"iterations": 5, "latent_iterations": 2}},
                        "grid": {"attack": ["gi", "gias"]}})
    by_attack = {r.config["attack"]: r.config for r in runs}
    assert by_attack["gi"]["attack_settings"] == {}
    assert by_attack["gi"]["hyperparameters"] == {"iterations": 5}
    assert by_attack["gias"]["attack_settings"] == {"gias": {"lr": 1e-4}}
    assert by_attack["gias"]["hyperparameters"] == {"iterations": 5, "latent_iterations": 2}


def test_results_survive_a_line_torn_by_a_kill(tmp_path):
    whole = {"id": "gi__none__B1__seed0", "status": "ok", "metrics": {}}
    (tmp_path / RESULTS).write_text(json.dumps(whole) + "\n" + '{"id": "gias__no')
    assert list(read_results(tmp_path)) == [whole["id"]]
    after = {"id": "gias__none__B1__seed0", "status": "ok", "metrics": {}}
    with append_lines(tmp_path / RESULTS) as f:  # what the resumed sweep does
        f.write(json.dumps(after) + "\n")
    assert list(read_results(tmp_path)) == [whole["id"], after["id"]]


def test_a_saved_config_repeats_a_record_attack_from_any_folder(tmp_path, monkeypatch):
    config = FederationConfig(model="lenet", image_size=16, channels=1, num_clients=2,
                              clients_per_round=1, rounds=1, batch_size=1, test_images=10)
    record = simulate(config, tmp_path / "work" / "rec", progress=False, log=lambda _: None)
    (client,) = {e.client_id for e in record.entries()}
    quick = ["--iterations", "2", "--restarts", "1", "--quiet", "--device", "cpu"]
    monkeypatch.chdir(tmp_path / "work")
    with contextlib.redirect_stdout(None):
        assert main(["attack", "--record", "rec", "--round", "0", "--client", str(client),
                     *quick, "--out", "runs"]) == 0
    (saved,) = (tmp_path / "work" / "runs").rglob("config.toml")
    assert saved.read_text().startswith(SAVED_NOTE)
    assert read_toml(saved)["record"] == str(record.path.resolve())
    monkeypatch.chdir(tmp_path)  # elsewhere: the relative 'rec' would not be found here
    with contextlib.redirect_stdout(None):
        assert main(["attack", "--config", str(saved), *quick, "--out", "again"]) == 0
    assert list((tmp_path / "again").rglob("metrics.json"))
