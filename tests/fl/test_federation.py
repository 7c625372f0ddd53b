"""The simulated federation (its settings, learning, seeding, resuming) and round-aware attacks."""
import dataclasses

import pytest
import torch

from gradinv import attacks
from gradinv.cli import main
from gradinv.fl import FederationConfig, open_record, simulate
from gradinv.types import DefenseSpec, GradinvError, ThreatModel


@pytest.mark.parametrize("change,field", [
    ({"clients_per_round": 11}, "clients_per_round"), ({"rounds": 0}, "rounds"),
    ({"server_lr": 0.0}, "server_lr"), ({"partition": "nope"}, "partition"),
    ({"dataset": "digits"}, "dataset"), ({"model": "alexnet"}, "model"),
    ({"alpha": float("nan")}, "alpha"), ({"store_private": "yes"}, "store_private"),
])
def test_config_errors_name_the_field(change, field):
    with pytest.raises(GradinvError, match=field):
        FederationConfig(**change)


def test_clients_per_round_defaults_to_what_the_federation_has():
    assert FederationConfig().clients_per_round == 4
    assert FederationConfig(num_clients=3).clients_per_round == 3


def _config(**change):
    """4 clients on the embedded images at 16 px grey: a federation that runs in about a second."""
    settings = dict(model="convnet", width=4, dataset="default", image_size=16, num_clients=4,
                    clients_per_round=2, batch_size=4, rounds=4, server_lr=0.5, test_images=100)
    return FederationConfig(**{**settings, **change})


def test_federation_learns(tmp_path):
    config = _config(clients_per_round=4, batch_size=32, rounds=6,
                     store_private=False)
    record = simulate(config, tmp_path / "rec", progress=False, log=lambda _: None)
    accuracy = record.test_accuracy()
    assert sorted(accuracy) == list(range(6))
    assert accuracy[5] >= 0.25 and accuracy[5] > accuracy[0]  # chance is 0.1


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_killed_run_leaves_complete_rounds_and_resumes_bit_identically(tmp_path):
    config = _config()
    quiet = {"progress": False, "log": lambda _: None}
    simulate(config, tmp_path / "whole", **quiet)

    def crash(observation, batch):
        if observation.round == 2:
            raise RuntimeError("client lost")

    with pytest.raises(RuntimeError, match="client lost"):
        simulate(config, tmp_path / "cut", on_update=crash, **quiet)
    cut = open_record(tmp_path / "cut")
    assert cut.rounds() == [0, 1] and {e.round for e in cut.entries()} == {0, 1}
    assert len(list((tmp_path / "cut" / "updates").iterdir())) == 5  # round 2's first update
    (tmp_path / "cut" / "updates" / "half-written.safetensors.tmp").write_bytes(b"x")  # a kill
    resumed = simulate(config, tmp_path / "cut", **quiet)
    assert resumed.rounds() == [0, 1, 2, 3]
    assert _files(tmp_path / "cut") == _files(tmp_path / "whole")


def test_resuming_with_other_settings_is_refused(tmp_path):
    simulate(_config(rounds=1), tmp_path, progress=False, log=lambda _: None)
    with pytest.raises(GradinvError, match="other settings.*server_lr"):
        simulate(_config(rounds=1, server_lr=0.1), tmp_path, progress=False)


def test_update_attacked_against_another_rounds_weights_matches_worse(tmp_path):
    config = _config(model="lenet", width=None, batch_size=1, rounds=4)
    record = simulate(config, tmp_path, progress=False, log=lambda _: None)
    entry = next(e for e in record.entries() if e.round == 3)
    observation = record.observation(3, entry.client_id)
    stale = dataclasses.replace(observation, broadcast=record.global_state(0))
    gi = attacks.create("gi", iterations=40, restarts=1)
    cost = {name: gi.reconstruct(record.build_model(), obs, image_shape=(1, 16, 16), seed=0,
                                 progress=False).matching_cost
            for name, obs in (("own", observation), ("stale", stale))}
    assert cost["own"] < 0.1 * cost["stale"], cost


def test_clients_apply_the_federations_defenses_seeded(tmp_path):
    quiet = {"progress": False, "log": lambda _: None}
    sent = []
    config = _config(rounds=2, defenses=("noise:sigma=0.01", "prune:rate=0.9"),
                     threat=ThreatModel(model_mode="train", defense_known=True))
    defended = simulate(config, tmp_path / "pruned", **quiet,
                        on_update=lambda observation, batch: sent.append(observation))
    plain = simulate(_config(rounds=2), tmp_path / "plain", **quiet)
    for observation in sent:  # what clients send keeps the prune defense's promise
        assert observation.defenses == (DefenseSpec("noise", {"sigma": 0.01}),  # no seed
                                        DefenseSpec("prune", {"rate": 0.9, "scope": "tensor"}))
        for tensor in observation.tensors.values():
            assert int((tensor == 0).sum()) >= round(0.9 * tensor.numel())
    assert not torch.equal(defended.global_state(1)["features.0.weight"],
                           plain.global_state(1)["features.0.weight"])
    assert defended.meta.federation["defenses"] == [
        {"name": "noise", "settings": {"sigma": 0.01, "seed": 0}},
        {"name": "prune", "settings": {"rate": 0.9, "scope": "tensor"}}]
    again = simulate(config, tmp_path / "again", **quiet)  # the same noise, drawn again
    assert again.test_accuracy() == defended.test_accuracy()
    assert torch.equal(again.global_state(2)["features.0.weight"],
                       defended.global_state(2)["features.0.weight"])
    assert simulate(config, tmp_path / "pruned", **quiet).rounds() == [0, 1]  # reopens
    # the record hands the known defenses to the attacks (absent where the server knows none)
    first = sent[0]
    assert defended.observation(first.round, first.client_id).defenses == first.defenses
    client = plain.entries()[0].client_id
    assert plain.observation(0, client).defenses is None


def test_defenses_that_cannot_run_are_refused_before_any_round(tmp_path, capsys):
    with pytest.raises(GradinvError, match="dpsgd needs per-example gradients"):
        _config(defenses=("dpsgd",))  # train-mode BatchNorm
    _config(defenses=("dpsgd",), threat=ThreatModel(model_mode="eval"))
    with pytest.raises(GradinvError, match="defense-known"):
        _config(threat=ThreatModel(defense_known=True))
    args = ["fl", "simulate", "--record", str(tmp_path / "rec"), "--model", "convnet",
            "--image-size", "16", "--clients", "4", "--rounds", "1", "--quiet"]
    assert main([*args, "--defense", "dpsgd:noise_multiplier=1.0"]) == 2
    err = capsys.readouterr().err
    assert "dpsgd needs per-example gradients" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "rec").exists()
    assert main([*args, "--defense", "prune:rate=0.5", "--test-images", "20"]) == 0
    assert open_record(tmp_path / "rec").meta.federation["defenses"][0]["name"] == "prune"
