"""The federation record: round trip, withheld fields, damage, the private split, the CLI."""
import json
import shutil
import subprocess
import sys

import pytest
import torch

from gradinv.cli import main
from gradinv.data import private_batch
from gradinv.fl import RecordWriter, compute_update, observe, open_record
from gradinv.record.private import load_private_batch
from gradinv.record import ModelSpec, Record, RecordMeta
from gradinv.types import FedAvgConfig, GradinvError, ThreatModel

SPEC = ModelSpec("convnet", 4, 1, 10, 16, "kaiming-fan-out")
FULL = ThreatModel(bn_stats_known=True, model_mode="train")
BLIND = ThreatModel(labels_known=False, num_images_known=False, local_hparams_known=False)


def _write(root, data, threat, *, kind="fedavg", private=True):
    """One complete round of two clients (0 and 3); returns their observations and batches."""
    meta = RecordMeta(model=SPEC, update=kind, threat=threat, data_channels=1, private=private,
                      federation={"written_by": "test"})
    model = SPEC.build()
    writer = RecordWriter(root, meta)
    sent = {}
    for client in (0, 3):
        batch = private_batch(data, 2, size=16, channels=1, offset=10 * client)
        update = compute_update(model, batch, kind=kind, fedavg=FedAvgConfig(0.1, 1),
                                mode=threat.model_mode, round=0, client_id=client)
        sent[client] = (observe(update, threat), batch)
        writer.add_update(*sent[client])
    writer.complete_round(0, model.state_dict(), 0.25)
    return meta, model, sent


def _same(a, b):
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)  # order too
    if isinstance(a, tuple):
        return all(_same(x, y) for x, y in zip(a, b))
    return torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b


def test_round_trip_is_bit_identical(tmp_path, default_data):
    meta, model, sent = _write(tmp_path, default_data, FULL)
    record = open_record(tmp_path)
    assert record.meta == meta and record.rounds() == [0] and record.test_accuracy() == {0: 0.25}
    assert [(e.round, e.client_id, e.num_examples) for e in record.entries()] == [
        (0, 0, 2), (0, 3, 2)]
    for client, (observation, batch) in sent.items():
        loaded = record.observation(0, client)
        for field in ("kind", "threat", "labels", "num_images", "fedavg", "round", "client_id",
                      "tensors", "broadcast", "bn_stats"):
            assert _same(getattr(loaded, field), getattr(observation, field)), field
        assert loaded.bn_stats  # convnet has BatchNorm and the threat model grants them
        truth = load_private_batch(tmp_path, 0, client)
        assert torch.equal(truth.images, batch.images) and torch.equal(truth.labels, batch.labels)
    assert _same(record.global_state(1), model.state_dict())
    assert type(record.build_model()) is type(model)
    assert len(list((tmp_path / "rounds").iterdir())) == 2  # round 0's broadcast once, and the end


def test_withheld_fields_are_absent_from_the_record(tmp_path, default_data):
    _write(tmp_path, default_data, BLIND)
    lines = [json.loads(line) for line in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    for line in lines[:-1]:
        assert not {"labels", "num_examples", "fedavg"} & set(line)
    notes = json.loads((tmp_path / "record.json").read_text())["fields"]
    assert "labels" not in notes["manifest"] and "update/<parameter>" in notes["update_tensors"]
    observation = open_record(tmp_path).observation(0, 3)
    assert observation.labels is None and observation.num_images is None
    assert observation.fedavg is None and observation.bn_stats is None


def _flip_byte(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))


DAMAGE = {
    "tampered update": (lambda r: _flip_byte(r / "updates/round-00000-client-0003.safetensors"),
                        "round-00000-client-0003.safetensors does not match its sha256"),
    "truncated broadcast": (lambda r: (r / "rounds/round-00000.safetensors").write_bytes(b"x"),
                            "round-00000.safetensors does not match"),
    "missing update": (lambda r: (r / "updates/round-00000-client-0003.safetensors").unlink(),
                       "round-00000-client-0003.safetensors is missing"),
    "manifest not JSON": (lambda r: (r / "manifest.jsonl").write_text("{oops\n"),
                          "manifest.jsonl line 1 is not a JSON object"),
    "no manifest": (lambda r: (r / "manifest.jsonl").unlink(), "manifest.jsonl is missing"),
    "broken record.json": (lambda r: (r / "record.json").write_text("["), "record.json is not"),
    "not a record": (lambda r: (r / "record.json").unlink(), "not a gradinv record"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_record_gives_one_clear_error(damage, tmp_path, default_data):
    _write(tmp_path, default_data, FULL)
    harm, message = DAMAGE[damage]
    harm(tmp_path)
    with pytest.raises(GradinvError, match=message) as err:
        open_record(tmp_path).observation(0, 3)
    assert "\n" not in str(err.value)


def test_empty_folder_is_not_a_record(tmp_path):
    with pytest.raises(GradinvError, match="is empty"):
        open_record(tmp_path)
    with pytest.raises(GradinvError, match="not a directory"):
        open_record(tmp_path / "nowhere")


def test_unfinished_round_and_cut_last_line_are_ignored(tmp_path, default_data):
    _write(tmp_path, default_data, FULL)
    manifest = tmp_path / "manifest.jsonl"
    first = manifest.read_text().splitlines()[0]
    with open(manifest, "a") as f:
        f.write(first.replace('"round": 0', '"round": 1') + "\n" + first[:40])
    record = open_record(tmp_path)
    assert record.rounds() == [0] and {e.round for e in record.entries()} == {0}
    with pytest.raises(GradinvError, match="no update of client 0 in round 1"):
        record.observation(1, 0)


def test_attack_path_cannot_reach_private_batches(tmp_path, default_data):
    _write(tmp_path, default_data, FULL)
    assert not [name for name in dir(Record) if "private" in name.lower()]
    code = ("import sys, gradinv, gradinv.attacks\n"
            "from gradinv.fl import open_record\n"
            f"open_record({str(tmp_path)!r}).observation(0, 3)\n"
            "assert 'gradinv.record.private' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
    shutil.rmtree(tmp_path / "private")  # a record shared without its ground truth
    assert load_private_batch(tmp_path, 0, 3) is None


def _simulate(capsys, record, *extra):
    code = main(["fl", "simulate", "--record", str(record), "--model", "lenet", "--dataset",
                 "default", "--image-size", "16", "--clients", "4", "--clients-per-round", "2",
                 "--rounds", "2", "--batch-size", "2", "--test-images", "50", "--quiet", *extra])
    return code, capsys.readouterr()


def _attack(capsys, record, runs):
    client = open_record(record).entries()[-1].client_id
    code = main(["attack", "--record", str(record), "--round", "1", "--client", str(client),
                 "--iterations", "5", "--restarts", "1", "--device", "cpu", "--out", str(runs),
                 "--quiet"])
    return code, capsys.readouterr()


def test_cli_simulate_then_attack_a_recorded_update(tmp_path, capsys):
    code, out = _simulate(capsys, tmp_path / "rec")
    assert code == 0 and "round 1: test accuracy" in out.out and "record:" in out.out
    code, out = _attack(capsys, tmp_path / "rec", tmp_path / "runs")
    assert code == 0 and "mean PSNR" in out.out
    (folder,) = (tmp_path / "runs").iterdir()
    config = json.loads((folder / "config.json").read_text())
    assert config["round"] == 1 and config["record_meta"]["model"]["name"] == "lenet"
    assert len(json.loads((folder / "metrics.json").read_text())["gi"]["psnr"]) == 2


def test_cli_attack_without_ground_truth_says_so(tmp_path, capsys):
    code, _ = _simulate(capsys, tmp_path / "rec", "--no-store-private")
    assert code == 0 and not (tmp_path / "rec" / "private").exists()
    code, out = _attack(capsys, tmp_path / "rec", tmp_path / "runs")
    assert code == 0 and "no ground truth" in out.out and "PSNR" not in out.out
    (folder,) = (tmp_path / "runs").iterdir()
    assert "psnr" not in json.loads((folder / "metrics.json").read_text())["gi"]


@pytest.mark.parametrize("argv,message", [
    (["--dataset", "digits"], "no separate train and test split"),
    (["--clients-per-round", "11"], "1 <= clients_per_round <= 10"),
])
def test_cli_simulate_bad_input_gives_one_line(argv, message, tmp_path, capsys):
    code = main(["fl", "simulate", "--record", str(tmp_path / "rec"), "--quiet", *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_a_recorded_update_attack_repeats_from_its_config_toml(tmp_path, capsys):
    code, _ = _simulate(capsys, tmp_path / "rec")
    assert code == 0
    code, _ = _attack(capsys, tmp_path / "rec", tmp_path / "a")
    (first,) = (tmp_path / "a").iterdir()
    code = main(["attack", "--config", str(first / "config.toml"), "--quiet", "--out",
                 str(tmp_path / "b")])
    assert code == 0, capsys.readouterr().err
    (second,) = (tmp_path / "b").iterdir()
    assert (first / "metrics.json").read_text() == (second / "metrics.json").read_text()
    code = main(["attack", "--config", str(first / "config.toml"), "--model", "convnet"])
    assert code == 2 and "does not apply to --record" in capsys.readouterr().err


def test_record_of_an_architecture_stays_format_version_1(tmp_path, default_data):
    """Older gradinv reads (and resumes) these records: nothing in them changed."""
    _write(tmp_path, default_data, FULL)
    meta = json.loads((tmp_path / "record.json").read_text())
    assert meta["version"] == 1 and "kind" not in meta["model"]
    assert open_record(tmp_path).description == SPEC.describe()


def test_model_description_round_trips_and_is_checked(tmp_path):
    from torch import nn

    from gradinv.record.model import describe_module

    module = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(),
                           nn.Linear(2 * 14 * 14, 10))
    model = describe_module(module, name="Sequential", source="mypkg.models:Net", channels=1,
                            num_classes=10, image_size=16)
    meta = RecordMeta(model=model, update="fedavg", threat=BLIND, data_channels=1,
                      private=False, federation={})
    RecordWriter(tmp_path / "rec", meta)
    assert open_record(tmp_path / "rec").meta == meta
    assert model.parameter_names() == [n for n, _ in module.named_parameters()]
    assert model.shapes()["1.num_batches_tracked"] == ()
    data = json.loads((tmp_path / "rec" / "record.json").read_text())
    for harm, message in ((lambda d: d.update(version=3), "reads versions 1 to 2"),
                          (lambda d: d["model"]["state"][0].pop("shape"), "is malformed")):
        damaged = json.loads(json.dumps(data))
        harm(damaged)
        (tmp_path / "rec" / "record.json").write_text(json.dumps(damaged))
        with pytest.raises(GradinvError, match=message):
            open_record(tmp_path / "rec")
