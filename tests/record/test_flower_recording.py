"""gradinv.record.flower: recording a Flower federation (the strategy driven by hand, and real
Flower simulations), for gradinv's architectures and the user's own client model."""
import json
import re
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord
from flwr.serverapp.strategy import FedAvg

from gradinv.cli import main
from gradinv.fl.client import compute_update
from gradinv.record.private import load_private_batch
from gradinv.record import open_record
from gradinv.record.flower import RecordingStrategy
from gradinv.models import build_model
from gradinv.audit.record import LeakageAuditConfig, run_leakage_audit
from gradinv.types import GradinvError, ThreatModel
from flower_helpers import LR, SPEC, Grid, initial_state, run_round
from flower_helpers import flower_run, own_record  # noqa: F401 (fixtures; flower_run is autouse)

ROOT = Path(__file__).resolve().parents[2]
RAY_PATTERN = "raylet|gcs_server|flower-superlink|flower-superexec|ray::"


def test_recorded_arrays_are_bit_exact_with_what_was_sent(tmp_path):
    strategy = RecordingStrategy(FedAvg(fraction_evaluate=0.0), tmp_path / "rec", model=SPEC,
                                 store_private=True)
    state = initial_state()
    sent, replies, arrays = run_round(strategy, state)
    assert all("gradinv-private" not in r.content for r in replies)  # FedAvg never saw it
    record = open_record(tmp_path / "rec")
    assert record.rounds() == [0]
    for k, v in record.global_state(0).items():
        assert torch.equal(v, state[k]), k
    for k, v in record.global_state(1).items():
        assert torch.equal(v, arrays.to_torch_state_dict()[k]), k
    for client, (new, _, batch) in enumerate(sent):
        obs = record.observation(0, client)
        assert obs.kind == "fedavg" and obs.fedavg.lr == LR and obs.num_images == 3
        assert torch.equal(obs.labels, batch.labels)
        for k, v in obs.tensors.items():
            assert torch.equal(v, new[k] - state[k]), k  # the delta of exactly what was sent
        private = load_private_batch(tmp_path / "rec", 0, client)
        assert torch.equal(private.images, batch.images)
        assert torch.equal(private.labels, batch.labels)


def test_one_local_step_delta_reproduces_the_gradient(tmp_path):
    fedavg = RecordingStrategy(FedAvg(fraction_evaluate=0.0), tmp_path / "a", model=SPEC)
    fedsgd = RecordingStrategy(FedAvg(fraction_evaluate=0.0), tmp_path / "b", model=SPEC,
                               update="fedsgd")
    state = initial_state()
    sent, _, _ = run_round(fedavg, state)
    run_round(fedsgd, state)
    model = build_model("lenet", channels=1, num_classes=10, image_size=16)
    model.load_state_dict(state)
    for client, (_, gradient, batch) in enumerate(sent):
        delta = open_record(tmp_path / "a").observation(0, client).tensors
        recorded = open_record(tmp_path / "b").observation(0, client)
        ours = compute_update(model, batch, kind="fedsgd", mode="train").tensors
        for k, g in gradient.items():
            err = (delta[k] / -LR - g).abs().max().item()
            assert err < 1e-5, (k, err)
            torch.testing.assert_close(recorded.tensors[k], delta[k] / -LR)
            torch.testing.assert_close(ours[k], g, rtol=1e-4, atol=1e-6)  # gradinv's replay
    print(f"max |delta/-lr - gradient|: {err:.2e}")


def test_withheld_metadata_is_not_recorded(tmp_path):
    threat = ThreatModel(labels_known=False, num_images_known=False, local_hparams_known=False,
                         model_mode="train")
    strategy = RecordingStrategy(FedAvg(fraction_evaluate=0.0), tmp_path / "r", model=SPEC,
                                 threat=threat, store_private=True)
    run_round(strategy, initial_state())
    line = json.loads((tmp_path / "r" / "manifest.jsonl").read_text().splitlines()[0])
    assert set(line) == {"round", "client_id", "broadcast", "update"}
    # the audit infers the withheld labels and scores them against the private batch
    result = run_leakage_audit(LeakageAuditConfig(str(tmp_path / "r"), attack="idlg,gi",
                                                  hyperparameters={"iterations": 2}),
                               out=None, progress=False)
    assert all(not r["labels_shared"] and r["label_accuracy"] is not None for r in result.rows)


def test_clear_errors_when_recording(tmp_path):
    fed = FedAvg(fraction_evaluate=0.0)
    other = build_model("lenet", channels=1, num_classes=10, image_size=28).state_dict()
    strategy = RecordingStrategy(fed, tmp_path / "arch", model=SPEC)
    with pytest.raises(GradinvError, match=r"do not match the recorded model lenet \(the record's model "
                       r"has classifier.weight of shape \[10, 192\]; the broadcast"):
        strategy.configure_train(1, ArrayRecord(other), ConfigRecord(), Grid([1, 2]))
    strategy = RecordingStrategy(fed, tmp_path / "labels", model=SPEC)  # labels_known
    with pytest.raises(GradinvError, match="did not declare 'labels'"):
        run_round(strategy, initial_state(), declare={"labels": None})
    strategy = RecordingStrategy(fed, tmp_path / "lr", model=SPEC, update="fedsgd")
    with pytest.raises(GradinvError, match="more than one local step"):
        run_round(strategy, initial_state(), declare={"local_batch_size": 1})
    strategy = RecordingStrategy(fed, tmp_path / "priv", model=SPEC, store_private=True)
    with pytest.raises(GradinvError, match="sent no private batch"):
        run_round(strategy, initial_state(), declare={"private": None})
    with pytest.raises(GradinvError, match="not an empty folder"):
        RecordingStrategy(fed, tmp_path / "priv", model=SPEC)
    with pytest.raises(GradinvError, match="message-API Strategy"):
        RecordingStrategy(object(), tmp_path / "x", model=SPEC)


def _ray_processes():
    found = subprocess.run(["pgrep", "-af", RAY_PATTERN], capture_output=True, text=True).stdout
    return [line for line in found.splitlines() if "pgrep" not in line]


def run_flower(command, tmp_path):
    """Run a Flower simulation script in its own process group (Ray's processes included) and
    check that nothing of it is left running; returns its output."""
    before = _ray_processes()
    env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0", "RAY_USAGE_STATS_ENABLED": "0",
           "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([str(c) for c in command], env=env, cwd=tmp_path,
                               start_new_session=True, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = process.communicate(timeout=180)
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # whatever of the group is still running
        except ProcessLookupError:
            pass
        process.wait()
    assert process.returncode == 0, output[-3000:]
    deadline = time.monotonic() + 15  # Ray's workers exit a few seconds after shutdown
    while (left := [p for p in _ray_processes() if p not in before]) and \
            time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, left
    return output


def test_flower_simulation_of_a_plain_torch_model_recorded_and_audited(tmp_path, capsys,
                                                                       monkeypatch):
    """The example app with --own-model: 2 clients train a plain torch.nn model with
    nn.BatchNorm2d for 2 rounds in a real Flower simulation (Ray); the record describes the
    model, and the audit builds it from the factory the user names. Nothing is left running."""
    run_flower([sys.executable, ROOT / "examples" / "flower" / "run_flower.py",
                "--record", tmp_path / "rec", "--rounds", "2", "--clients", "2",
                "--dataset", "default", "--own-model"], tmp_path)
    record = open_record(tmp_path / "rec")
    assert record.rounds() == [0, 1] and len(record.entries()) == 4
    assert sorted(e.client_id for e in record.entries()) == [0, 0, 1, 1]
    assert record.meta.model.source == "client_model:Net"
    monkeypatch.syspath_prepend(str(ROOT / "examples" / "flower"))
    assert main(["audit", str(tmp_path / "rec"), "--model-factory", "client_model:Net",
                 "--iterations", "5", "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert "most leaking client" in capsys.readouterr().out
    assert len(list((tmp_path / "out").glob("*/report.html"))) == 1


PARITY = {"model": "convnet", "width": 4, "image_size": 16, "num_clients": 2,
          "clients_per_round": 2, "rounds": 3, "update": "fedavg", "batch_size": 4,
          "fedavg": {"lr": LR, "local_batch_size": 2, "epochs": 1}, "test_images": 10}


@pytest.fixture
def one_thread():
    """torch's CPU kernels sum in an order that depends on the number of threads, so results
    are bit-identical only at equal thread counts: the Flower simulation runs on one thread
    (``run_flower``), and so does gradinv's side of a bit-for-bit comparison with it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_flower_and_gradinv_federations_agree_in_every_round(tmp_path, one_thread):
    """The same federation (data, seeds, model: a ConvNet with BatchNorm, 2 clients, 3
    rounds, two local SGD steps) run in a real Flower simulation and in gradinv's own.

    The clients' computation is identical: from the global state Flower broadcast in a round,
    gradinv's clients produce exactly (bit for bit) the updates Flower recorded, in every
    round, and the attack on them gives the same result with the same seed. Round 0 starts
    from the same state, so there the two records are bit-identical. From round 1 on the global
    states differ by float rounding, for a good reason: Flower's FedAvg averages the clients'
    parameters (sum of w_i * theta_i, in numpy), gradinv's adds the mean delta to the global
    parameters (theta + sum of w_i * delta_i); both are FedAvg, rounded differently. So later
    rounds agree to float rounding, not bit for bit. (Flower also averages buffers, turning the
    integer num_batches_tracked into float64; gradinv keeps them as broadcast.)"""
    from gradinv import attacks
    from gradinv.fl.client import observe
    from gradinv.fl.federation import Federation, FederationConfig, aggregate, simulate
    from gradinv.audit.config import config_from_dict

    from flower_parity_app import client_batch

    config = config_from_dict(FederationConfig, PARITY)
    run_flower([sys.executable, ROOT / "tests" / "flower_parity_app.py", tmp_path / "flower",
                json.dumps(PARITY)], tmp_path)
    flower = open_record(tmp_path / "flower")
    ours = simulate(config, tmp_path / "gradinv", progress=False, log=lambda _: None)
    assert flower.rounds() == ours.rounds() == [0, 1, 2]
    assert [(e.round, e.client_id) for e in flower.entries()] == \
        [(e.round, e.client_id) for e in ours.entries()]
    federation, model = Federation(config), ours.build_model()
    worst = {"state": 0.0, "update": 0.0}
    for r in flower.rounds():
        state = flower.global_state(r)
        replayed = []
        for client in (0, 1):
            theirs, mine = flower.observation(r, client), ours.observation(r, client)
            federation.model.load_state_dict(state)
            update = compute_update(federation.model, client_batch(federation, r, client),
                                    kind="fedavg", fedavg=config.fedavg, mode="train", round=r,
                                    client_id=client)
            replayed.append(update)
            for k, v in theirs.tensors.items():
                assert torch.equal(v, update.tensors[k]), (r, client, k)  # bit for bit
                if r == 0:
                    assert torch.equal(v, mine.tensors[k]), (client, k)
                torch.testing.assert_close(v, mine.tensors[k], rtol=1e-4, atol=1e-6)
                worst["update"] = max(worst["update"], (v - mine.tensors[k]).abs().max().item())
            assert torch.equal(theirs.labels, mine.labels) and theirs.fedavg == mine.fedavg
            gi = attacks.create("gi", iterations=3, restarts=1)
            a, b = (gi.reconstruct(model, obs, image_shape=(1, 16, 16), seed=5)
                    for obs in (theirs, observe(update, config.threat)))
            assert torch.equal(a.images, b.images) and a.matching_cost == b.matching_cost
        expected = aggregate(state, replayed, server_lr=0.0)  # gradinv's arithmetic
        for k in federation.model.state_dict():
            got = flower.global_state(r + 1)[k]
            torch.testing.assert_close(got.to(expected[k].dtype), expected[k], rtol=1e-5,
                                       atol=1e-7)
            worst["state"] = max(worst["state"], (got.double() - expected[k].double()).abs()
                                 .max().item())
    print(f"largest difference, Flower vs gradinv: aggregated state {worst['state']:.2e}, "
          f"recorded update {worst['update']:.2e}")


def test_missing_flower_is_one_clear_error():
    """Without Flower, gradinv.record.flower says how to get it; the rest of gradinv, 'gradinv audit'
    included, does not need it."""
    code = ("import sys; sys.modules['flwr'] = None\n"
            "import gradinv.cli, gradinv.audit.record\n"
            "try:\n    import gradinv.record.flower\nexcept ImportError as e:\n    print(e)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and "pip install 'gradinv[flower]'" in done.stdout


# -- the user's own client model -----------------------------------------------------------


def test_own_model_is_recorded_as_a_description(own_record):
    meta = json.loads((own_record / "record.json").read_text())
    assert meta["version"] == 2 and meta["model"]["kind"] == "description"
    model = meta["model"]
    assert model["source"] == "custom_models:TinyNet" and model["name"] == "TinyNet"
    assert [t["name"] for t in model["state"]][:3] == ["0.weight", "0.bias", "1.weight"]
    assert {"name": "1.running_mean", "shape": [4], "dtype": "float32",
            "parameter": False} in model["state"]
    record = open_record(own_record)
    assert record.rounds() == [0, 1]
    assert list(record.observation(1, 0).tensors) == record.description.parameter_names()
    assert record.global_state(1)["1.running_var"].ne(1).any()  # averaged client statistics
    with pytest.raises(GradinvError, match="--model-factory package.module:factory") as err:
        record.build_model()
    assert "recorded from custom_models:TinyNet" in str(err.value)


def test_own_model_recording_errors(tmp_path):
    from custom_models import Sequence1dNet, TinyNet
    fed = FedAvg(fraction_evaluate=0.0)
    sizes = dict(channels=1, num_classes=10, image_size=16)
    cases = [
        (dict(model=TinyNet(), channels=1, num_classes=10), "give image_size= with your own"),
        (dict(model=TinyNet(), channels=1, num_classes=7, image_size=16), "check num_classes="),
        (dict(model=TinyNet(), channels=3, num_classes=10, image_size=16), "check channels="),
        (dict(model=Sequence1dNet(), **sizes), "2 (BatchNorm1d) cannot be converted"),
        (dict(model=SPEC, **sizes), "channels is part of the ModelSpec"),
        (dict(model="lenet"), "must be a ModelSpec, an nn.Module or a factory"),
        (dict(model=lambda: 3, **sizes), "returned a int, not a torch.nn.Module"),
    ]
    for i, (kwargs, message) in enumerate(cases):
        with pytest.raises(GradinvError, match=re.escape(message)):
            RecordingStrategy(fed, tmp_path / str(i), **kwargs)
    strategy = RecordingStrategy(fed, tmp_path / "ok", model=TinyNet(), **sizes)
    assert strategy.writer.meta.model.source == "custom_models:TinyNet"  # from the class
    with pytest.raises(GradinvError, match=r"the record's model has 0.weight of shape"):
        strategy.configure_train(1, ArrayRecord(TinyNet(6).state_dict()), ConfigRecord(),
                                 Grid([1, 2]))
