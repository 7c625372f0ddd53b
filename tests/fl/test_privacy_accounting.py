"""Privacy accounting over a whole federation: a DP defense's epsilon is the federation's
budget per client, composed over the updates each client sends (PLD accountant), and each
client's spent epsilon is written in the record and shown where the record is audited."""
import contextlib
import json

import pytest

from gradinv.audit.privacy import privacy_section
from gradinv.checks import GradinvError
from gradinv.cli import main
from gradinv.defenses import create
from gradinv.defenses.noise import gaussian_epsilon
from gradinv.defenses.pipeline import over_federation
from gradinv.fl import FederationConfig, simulate
from gradinv.fl.federation import Federation, participations, sample_clients
from gradinv.types import FedAvgConfig

pytest.importorskip("dp_accounting")

DP_NOISE = "dp-noise:epsilon=1,delta=1e-5,max_norm=1"
QUIET = {"progress": False, "log": lambda _: None}


def _config(**change) -> FederationConfig:
    settings = {"model": "lenet", "image_size": 16, "channels": 1, "num_clients": 4,
                "clients_per_round": 2, "rounds": 5, "batch_size": 2, "test_images": 10}
    return FederationConfig(**{**settings, **change})


def _spent(config: FederationConfig, name: str) -> dict[str, float]:
    (account,) = [d for d in Federation(config).privacy()["defenses"] if d["name"] == name]
    return account["spent_epsilon"]


def test_the_schedule_is_a_fixed_size_sample_each_round_and_the_one_the_rounds_use(tmp_path):
    config = _config(rounds=3)
    for r in range(config.rounds):
        clients, _ = sample_clients(config, r)
        assert len(set(clients.tolist())) == config.clients_per_round
    record = simulate(config, tmp_path / "rec", **QUIET)
    counts = {c: 0 for c in range(config.num_clients)}
    for entry in record.entries():
        counts[entry.client_id] += 1
    assert participations(config) == counts


def test_dp_noise_is_calibrated_to_the_whole_federation_not_one_round():
    config = _config(defenses=(DP_NOISE,))
    most = max(participations(config).values())
    assert most > 1
    (spec,) = config.defenses
    assert spec.settings["rounds"] == most
    spent = _spent(config, "dp-noise")
    assert max(spent.values()) == pytest.approx(1.0, abs=1e-6)  # the budget, not 1 per round
    assert all(e <= 1.0 + 1e-6 for e in spent.values())


def test_one_round_calibration_would_overspend_so_a_given_count_below_it_is_refused():
    one_round = create("dp-noise", epsilon=1.0, max_norm=1.0)
    assert one_round.spent_epsilon(4, 1) > 1.5  # what the record used to call epsilon 1
    with pytest.raises(GradinvError, match="rounds=1 calibrates epsilon for 1 release"):
        _config(defenses=(DP_NOISE + ",rounds=1",))
    (kept,) = over_federation([DP_NOISE + ",rounds=9"], 4, 1)  # more noise: the user's choice
    assert kept.settings["rounds"] == 9


def test_dpsgd_epsilon_covers_every_local_step_of_every_update():
    config = _config(update="fedavg", fedavg=FedAvgConfig(epochs=2),
                     defenses=("dpsgd:epsilon=2,delta=1e-5",))
    most = max(participations(config).values())
    assert config.defenses[0].settings["steps"] == 2 * most
    assert max(_spent(config, "dpsgd").values()) == pytest.approx(2.0, abs=1e-6)
    with pytest.raises(GradinvError, match="steps=2 calibrates"):
        _config(update="fedavg", fedavg=FedAvgConfig(epochs=2),
                defenses=("dpsgd:epsilon=2,delta=1e-5,steps=2",))


def test_a_noise_multiplier_is_accounted_per_client_by_its_participations():
    config = _config(defenses=("dpsgd:noise_multiplier=2",))
    counts, spent = participations(config), _spent(config, "dpsgd")
    for client, n in counts.items():
        assert spent[str(client)] == pytest.approx(gaussian_epsilon(2.0, n, 1e-5, "add-remove"))
    assert spent[str(max(counts, key=counts.get))] > spent[str(min(counts, key=counts.get))]


def test_the_record_holds_each_clients_epsilon_and_the_audit_report_shows_it(tmp_path):
    lines = []
    record = simulate(_config(rounds=2, defenses=(DP_NOISE,)), tmp_path / "rec",
                      progress=False, log=lines.append)
    stored = json.loads((record.path / "record.json").read_text())["privacy"]
    assert set(stored["participations"]) == {"0", "1", "2", "3"}
    assert "without replacement" in stored["sampling"] and "no amplification" in stored["sampling"]
    assert stored["in_the_clear"] == ["labels", "number of examples"]
    assert any("each client spends epsilon" in line for line in lines)
    assert any("not covered" in line and "labels" in line for line in lines)
    assert record.meta.privacy == stored
    (html,) = privacy_section(record.meta)
    assert "Privacy spent per client" in html and "epsilon (dp-noise)" in html


def test_a_record_without_a_dp_defense_has_no_account(tmp_path):
    record = simulate(_config(rounds=1, defenses=("prune:rate=0.5",)), tmp_path / "rec", **QUIET)
    assert "privacy" not in json.loads((record.path / "record.json").read_text())
    assert privacy_section(record.meta) == []


def test_the_audit_report_of_the_record_shows_the_account(tmp_path):
    record = simulate(_config(rounds=1, defenses=(DP_NOISE,)), tmp_path / "rec", **QUIET)
    with contextlib.redirect_stdout(None):
        assert main(["audit", str(record.path), "--attack", "gi", "--iterations", "1",
                     "--restarts", "1", "--max-updates", "1", "--quiet", "--device", "cpu",
                     "--out", str(tmp_path / "out")]) == 0
    (leakage,) = (tmp_path / "out").rglob("leakage.json")
    report = (leakage.parent / "report.html").read_text()
    assert "Privacy spent per client over the whole federation" in report
