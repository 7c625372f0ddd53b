"""Settings addressed by attack, the TOML run configuration, separate seeds, run_config."""
import json

import pytest
import torch

from gradinv.audit import AuditConfig, PriorSpec, run_config
from gradinv.audit.engine import attack_arguments, build_attacks
from gradinv.cli import main
from gradinv.audit.config import load_config, parse_assignment, parse_value, save_config
from gradinv.types import DefenseSpec, FedAvgConfig, GradinvError, ThreatModel

TINY = ["--model", "lenet", "--image-size", "16", "--iterations", "3", "--restarts", "1",
        "--device", "cpu", "--quiet"]


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_values_and_assignments_are_typed():
    assert [parse_value(v) for v in ("true", "False", "3", "1e-4", "noise")] == [
        True, False, 3, 1e-4, "noise"]
    assert parse_assignment("gias.lr=1e-4") == ("gias", "lr", 1e-4)
    with pytest.raises(GradinvError, match="NAME.key=value"):
        parse_assignment("gias.lr")


def test_shared_lr_no_longer_reaches_gias():
    """The bug: --attack gi,gias --lr 0.1 silently gave GIAS's generator stage lr 0.1."""
    with pytest.raises(GradinvError, match="lr is ambiguous.*gias"):
        attack_arguments("gi,gias", {"lr": 0.1}, {})
    chosen = build_attacks(attack_arguments("gi,gias", {"lr": 0.1, "iterations": 7},
                                            {"gias": {"lr": 3e-4}}))
    assert chosen["gi"].settings["lr"] == 0.1 and chosen["gias"].settings["lr"] == 3e-4
    assert chosen["gi"].settings["iterations"] == chosen["gias"].settings["iterations"] == 7


def test_cli_refuses_the_ambiguous_flat_flag(capsys, tmp_path):
    code, _, err = _run(capsys, "attack", "--attack", "gi,gias", "--lr", "0.1", *TINY,
                        "--out", str(tmp_path))
    assert code == 2 and "lr is ambiguous" in err and "--set" in err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("assignment,message", [
    ("gias.nope=1", "not among the chosen attacks"),
    ("gi.nope=1", "gi takes no setting 'nope'"),
    ("gi.lr=-1", "lr must be"),
    ("gi.init=purple", "unknown init"),
    ("gi=1", "bad --set"),
])
def test_bad_assignments_are_one_clear_line(assignment, message, capsys, tmp_path):
    code, _, err = _run(capsys, "attack", *TINY, "--set", assignment, "--out", str(tmp_path))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_set_reaches_one_attack_and_one_defense(capsys, tmp_path):
    code, _, err = _run(capsys, "attack", "--attack", "gi,dlg", *TINY, "--set", "gi.tv=1e-3",
                        "--set", "dlg.lr=0.5", "--defense", "prune:rate=0.9",
                        "--set", "prune.rate=0.5", "--out", str(tmp_path))
    assert code == 0, err
    (folder,) = tmp_path.iterdir()
    config = json.loads((folder / "config.json").read_text())
    assert config["attacks"]["gi"]["tv"] == 1e-3 and config["attacks"]["gi"]["lr"] == 0.1
    assert config["attacks"]["dlg"]["lr"] == 0.5
    assert config["attack_settings"] == {"gi": {"tv": 1e-3}, "dlg": {"lr": 0.5}}
    assert config["defenses"][0]["settings"]["rate"] == 0.5


def test_seed_sets_both_seeds_unless_told_otherwise():
    both = AuditConfig(seed=3)
    assert (both.model_seed, both.attack_seed) == (3, 3)
    split = AuditConfig(seed=3, model_seed=1)
    assert (split.model_seed, split.attack_seed) == (1, 3)
    with pytest.raises(GradinvError, match="attack_seed must be"):
        AuditConfig(attack_seed=-1)


def _tiny(**changes) -> AuditConfig:
    return AuditConfig(**{"model": "lenet", "image_size": 16, "device": "cpu",
                          "hyperparameters": {"iterations": 3, "restarts": 1}, **changes})


def test_model_seed_changes_the_victim_and_attack_seed_the_start():
    base = run_config(_tiny()).outcomes["gi"].scores.mean_psnr
    assert run_config(_tiny()).outcomes["gi"].scores.mean_psnr == base  # deterministic
    assert run_config(_tiny(model_seed=1)).outcomes["gi"].scores.mean_psnr != base
    assert run_config(_tiny(attack_seed=1)).outcomes["gi"].scores.mean_psnr != base



def test_an_attack_gets_the_same_result_whichever_attacks_run_with_it():
    """Issue 18 asked whether GIAS differs between a run with GI-z and one without: each
    attack draws its starts from its own seeded generator, has its own prior, and leaves the
    observed update and the model it shares with the others as it found them."""
    alone = run_config(_tiny(attack="gias", batch_size=2)).outcomes["gias"]
    with_others = run_config(_tiny(attack="dlg,gi,gi-z,gias", batch_size=2)).outcomes["gias"]
    assert torch.equal(alone.reconstruction.images, with_others.reconstruction.images)
    assert alone.scores.mean_psnr == with_others.scores.mean_psnr

def test_run_config_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = run_config(_tiny(attack="gi,gi-z"))
    assert set(run.outcomes) == {"gi", "gi-z"} and run.truth.images.shape == (1, 3, 16, 16)
    assert run.settings["attacks"]["gi-z"]["prior"] == "fashion-mnist"
    assert not any(tmp_path.iterdir())


def test_config_round_trips_through_toml(tmp_path):
    config = AuditConfig(
        attack="gi,gias", model="convnet", width=8, batch_size=2, image_size=16, update="fedavg",
        fedavg=FedAvgConfig(lr=0.05, local_batch_size=1, epochs=2),
        threat=ThreatModel(labels_known=False, defense_known=True, model_mode="train"),
        defenses=(DefenseSpec("prune", {"rate": 0.5}), "noise:sigma=0.001"),
        hyperparameters={"iterations": 5, "cost": "l2"},
        attack_settings={"gias": {"lr": 1e-4, "signed": True}, "gi": {"init": "noise"}},
        prior=PriorSpec("fashion-mnist", output_range=(-1.0, 1.0)), seed=2, attack_seed=7)
    save_config(config, tmp_path / "run.toml")
    assert load_config(AuditConfig, tmp_path / "run.toml") == config
    with pytest.raises(GradinvError, match="unknown setting 'nope'"):
        (tmp_path / "bad.toml").write_text("nope = 1\n")
        load_config(AuditConfig, tmp_path / "bad.toml")


def test_a_run_repeats_from_its_config_toml(capsys, tmp_path):
    code, _, err = _run(capsys, "attack", "--attack", "gi,gi-z", *TINY, "--set", "gi.tv=1e-3",
                        "--seed", "4", "--out", str(tmp_path / "a"))
    assert code == 0, err
    (first,) = (tmp_path / "a").iterdir()
    code, _, err = _run(capsys, "attack", "--config", str(first / "config.toml"), "--quiet",
                        "--out", str(tmp_path / "b"))
    assert code == 0, err
    (second,) = (tmp_path / "b").iterdir()
    metrics = [json.loads((f / "metrics.json").read_text()) for f in (first, second)]
    assert metrics[0] == metrics[1]
    assert load_config(AuditConfig, first / "config.toml") == load_config(
        AuditConfig, second / "config.toml")
    # options given override the file
    code, _, err = _run(capsys, "attack", "--config", str(first / "config.toml"), "--quiet",
                        "--seed", "5", "--out", str(tmp_path / "c"))
    (third,) = (tmp_path / "c").iterdir()
    config = json.loads((third / "config.json").read_text())
    assert code == 0 and (config["model_seed"], config["attack_seed"]) == (5, 5)
    assert config["attacks"]["gi"]["tv"] == 1e-3


def test_run_folders_never_collide_between_threads(tmp_path):
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    from gradinv.report import new_run_dir
    start = Barrier(16)

    def claim(_: int):
        start.wait()
        return new_run_dir(tmp_path / "runs", "same-name")

    with ThreadPoolExecutor(16) as pool:
        folders = list(pool.map(claim, range(16)))
    assert len(set(folders)) == 16 and all(f.is_dir() for f in folders)


def test_an_option_given_with_config_rederives_what_the_file_resolved(tmp_path):
    from gradinv.cli import build_parser
    from gradinv.cli.attack import config_from_args
    save_config(AuditConfig(model="lenet", seed=2), tmp_path / "run.toml")
    args = build_parser().parse_args(["attack", "--config", str(tmp_path / "run.toml"),
                                      "--model", "convnet", "--seed", "5"])
    config = config_from_args(args)
    assert config.init_scheme == "kaiming-fan-out" and config.model_seed == 5
