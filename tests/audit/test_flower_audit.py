"""gradinv audit (and attack --record, prior learn) on a record of a Flower federation: ranking
clients and rounds, clear errors, the user's own client model named by --model-factory."""
import json
import os
import subprocess
import sys

import pytest
import torch
from flwr.serverapp.strategy import FedAvg

from gradinv.cli import main
from gradinv.record.flower import RecordingStrategy
from gradinv.models import build_model
from gradinv.audit.record import LeakageAuditConfig, run_leakage_audit
from gradinv.types import GradinvError
from flower_helpers import SPEC, initial_state, run_round
from flower_helpers import flower_run, own_record  # noqa: F401 (fixtures; flower_run is autouse)


@pytest.fixture
def record(tmp_path):
    strategy = RecordingStrategy(FedAvg(fraction_evaluate=0.0), tmp_path / "rec", model=SPEC,
                                 store_private=True)
    state = initial_state()
    _, _, arrays = run_round(strategy, state)
    run_round(strategy, arrays.to_torch_state_dict(), server_round=2)
    return tmp_path / "rec"


def test_audit_ranks_clients_and_rounds(record, tmp_path):
    config = LeakageAuditConfig(str(record), hyperparameters={"iterations": 5}, rounds=(0, 1),
                                max_updates=3)
    result = run_leakage_audit(config, out=tmp_path / "out", progress=False)
    assert len(result.rows) == 3 and [r["round"] for r in result.rounds] == [0, 1]
    assert all(r["mean_psnr"] is not None for r in result.rows)
    psnr = [c["mean_psnr"] for c in result.clients]
    assert psnr == sorted(psnr, reverse=True)
    for name in ("report.html", "leakage.json", "leakage.png"):
        assert (result.folder / name).stat().st_size > 0
    assert json.loads((result.folder / "leakage.json").read_text())["ranked_by"] == "mean_psnr"


def test_audit_ranks_each_update_by_its_strongest_attack(record):
    """Two attacks on the same updates: a client leaks what the better one recovers, so its
    score is the mean over its updates of the best attack's PSNR, not of both attacks'."""
    config = LeakageAuditConfig(str(record), attack="gi,dlg", hyperparameters={"iterations": 5},
                                rounds=(0,))
    result = run_leakage_audit(config, out=None, progress=False)
    for client in result.clients:  # one update per client in round 0
        scores = [r["mean_psnr"] for r in result.rows if r["client"] == client["client"]]
        assert len(scores) == 2 and scores[0] != scores[1]
        assert client["mean_psnr"] == max(scores)


def test_audit_clear_errors(record, tmp_path, capsys):
    def audit(path, *extra):
        code = main(["audit", str(path), "--iterations", "2", "--out", str(tmp_path / "o"),
                     "--quiet", *extra])
        return code, capsys.readouterr().err

    wrong = build_model("lenet", channels=1, num_classes=10, image_size=28)
    with pytest.raises(GradinvError, match="does not fit the record.*needs no model"):
        run_leakage_audit(LeakageAuditConfig(str(record)), out=None, model=wrong)
    (tmp_path / "empty").mkdir()
    assert audit(tmp_path / "empty") == (2, f"gradinv: error: {tmp_path / 'empty'} is not a "
                                            "gradinv record: it is empty\n")
    assert "has no complete round 5" in audit(record, "--rounds", "5")[1]
    # cut off during its first round: nothing complete to audit
    cut = tmp_path / "cut"
    cut.mkdir()
    for name in ("record.json", "rounds", "updates"):
        os.system(f"cp -r {record / name} {cut / name}")
    lines = (record / "manifest.jsonl").read_text().splitlines()
    (cut / "manifest.jsonl").write_text("\n".join(lines[:2]) + "\n" + lines[2][:20])
    assert "holds no complete round" in audit(cut)[1]
    # a truncated update file is caught by its sha256
    update = record / "updates" / "round-00001-client-0001.safetensors"
    update.write_bytes(update.read_bytes()[:100])
    code, err = audit(record)
    assert code == 2 and "does not match its sha256" in err


def test_audit_without_private_batches_ranks_by_matching_cost(tmp_path):
    strategy = RecordingStrategy(FedAvg(fraction_evaluate=0.0), tmp_path / "r", model=SPEC)
    run_round(strategy, initial_state(), declare={"private": None})
    result = run_leakage_audit(LeakageAuditConfig(str(tmp_path / "r"),
                                                  hyperparameters={"iterations": 3}),
                               out=tmp_path / "out", progress=False)
    assert all(r["mean_psnr"] is None for r in result.rows)
    costs = [c["matching_cost"] for c in result.clients]
    assert costs == sorted(costs)
    summary = json.loads((result.folder / "leakage.json").read_text())
    assert summary["ranked_by"] == "matching_cost"
    assert "ranked by matching cost" in (result.folder / "report.html").read_text()


def test_audit_takes_prior_and_per_attack_settings(record, tmp_path, capsys):
    """GIAS with the shipped prior on a recorded update, settings given per attack."""
    out = tmp_path / "out"
    assert main(["audit", str(record), "--attack", "gias", "--prior", "fashion-mnist",
                 "--set", "gias.iterations=3", "--set", "gias.latent_iterations=2",
                 "--set", "gias.restarts=1", "--rounds", "1", "--clients", "0", "--out",
                 str(out), "--quiet"]) == 0, capsys.readouterr().err
    summary = json.loads(next(out.glob("*/leakage.json")).read_text())
    assert summary["prior"]["source"] == "fashion-mnist"
    assert summary["attack_settings"] == {"gias": {"iterations": 3, "latent_iterations": 2,
                                                   "restarts": 1}}
    assert len(summary["updates"]) == 1 and summary["updates"][0]["attack"] == "gias"


@pytest.mark.parametrize("argv,message", [
    (["--prior", "fashion-mnist"], "no attack among gi takes 'prior'"),
    (["--set", "gi.bogus=1"], "gi takes no setting 'bogus'"),
    (["--set", "gias.lr=1e-4"], "settings for 'gias', which is not among the chosen attacks"),
    (["--set", "prune.rate=0.5"], "'prune', a defense the client does not apply here"),
    (["--prior-weights", "w.pt"], "--prior-weights only applies to --prior package.module"),
    (["--set", "gi.lr"], "bad --set 'gi.lr'"),
])
def test_audit_bad_attack_settings_are_one_line(record, tmp_path, capsys, argv, message):
    code = main(["audit", str(record), "--out", str(tmp_path / "o"), "--quiet", *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


# -- the user's own client model -----------------------------------------------------------


def test_own_model_record_is_audited_with_its_factory(own_record, tmp_path, capsys):
    from custom_models import TinyNet
    out = str(tmp_path / "out")
    assert main(["audit", str(own_record), "--model-factory", "custom_models:TinyNet",
                 "--iterations", "3", "--restarts", "1", "--out", out, "--quiet"]) == 0
    assert "most leaking client" in capsys.readouterr().out
    summary = json.loads(next((tmp_path / "out").glob("*/leakage.json")).read_text())
    assert summary["model_factory"] == "custom_models:TinyNet" and len(summary["updates"]) == 4
    assert main(["attack", "--record", str(own_record), "--round", "1", "--client", "1",
                 "--model-factory", "custom_models:TinyNet", "--iterations", "3", "--out", out,
                 "--quiet"]) == 0
    # the Python API takes the module itself (its BatchNorm converted on a copy) or a callable
    config = LeakageAuditConfig(str(own_record), hyperparameters={"iterations": 2},
                                rounds=(1,), clients=(0,))
    module = TinyNet()
    for given in (module, TinyNet):
        rows = run_leakage_audit(config, out=None, progress=False, model=given).rows
        assert len(rows) == 1 and rows[0]["mean_psnr"] is not None
    assert type(module[1]) is torch.nn.BatchNorm2d  # the user's module is left as it was
    # GIML learns from the same record with the same factory
    assert main(["prior", "learn", "--record", str(own_record), "--model-factory",
                 "custom_models:TinyNet", "--steps", "1", "--latent-iterations", "2",
                 "--adapt-iterations", "1", "--width", "8", "--out", str(tmp_path / "giml"),
                 "--quiet"]) == 0
    assert (tmp_path / "giml" / "generator.pt").is_file()


@pytest.mark.parametrize("argv,message", [
    ([], "the record's model is the user's own TinyNet (it was recorded from "
         "custom_models:TinyNet), which gradinv does not import from a record"),
    (["--model-factory", "custom_models:wide_net"], "the given model does not fit the record "
     "{record}: the record's model has 0.weight of shape [4, 1, 3, 3]; the given model has "
     "[6, 1, 3, 3]"),
    (["--model-factory", "custom_models:Sequence1dNet"], "2 (BatchNorm1d) cannot be converted"),
    (["--model-factory", "custom_models:nothing"], "custom_models has no callable 'nothing'"),
    (["--model-factory", "no_such_module_xyz:Net"], "importing no_such_module_xyz failed"),
])
def test_own_model_audit_errors_are_one_line(own_record, tmp_path, capsys, argv, message):
    code = main(["audit", str(own_record), "--iterations", "2", "--out", str(tmp_path / "o"),
                 "--quiet", *argv])
    err = capsys.readouterr().err
    assert code == 2 and message.format(record=own_record) in err, err
    assert len(err.strip().splitlines()) == 1


def test_loading_a_record_never_imports_the_code_it_names(own_record, tmp_path):
    """A record naming a module that would run code on import: reading and auditing it
    (without --model-factory) never imports it."""
    (tmp_path / "trap_module.py").write_text(
        f"open({str(tmp_path / 'sprung')!r}, 'w').close()\nclass Net: pass\n")
    meta = json.loads((own_record / "record.json").read_text())
    meta["model"]["source"] = "trap_module:Net"
    (own_record / "record.json").write_text(json.dumps(meta))
    code = (f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n"
            "from gradinv.fl import open_record\nfrom gradinv.cli import main\n"
            f"record = open_record({str(own_record)!r})\n"
            "[obs for obs in record.observations()]\n"
            f"assert main(['audit', {str(own_record)!r}, '--quiet']) == 2\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "recorded from trap_module:Net" in done.stderr
    assert not (tmp_path / "sprung").exists()


def test_model_factory_is_refused_for_a_fresh_batch(capsys):
    assert main(["attack", "--model-factory", "custom_models:TinyNet", "--quiet"]) == 2
    assert "--model-factory only applies to --record" in capsys.readouterr().err
