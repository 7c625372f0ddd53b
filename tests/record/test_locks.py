"""Two writers and provenance (issue 19, section 2): a record and a checkpoint folder are
locked while written, a manifest with a repeated (round, client) is refused, and a GIML
checkpoint refuses to resume on another record."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from gradinv.cli import main
from gradinv.files import FolderLock
from gradinv.fl import RecordWriter, open_record
from gradinv.types import GradinvError

SIMULATE = ["fl", "simulate", "--model", "lenet", "--dataset", "default", "--image-size", "16",
            "--clients", "3", "--clients-per-round", "2", "--batch-size", "2",
            "--test-images", "20", "--quiet"]
LEARN = ["prior", "learn", "--width", "8", "--latent-dim", "8", "--latent-iterations", "2",
         "--adapt-iterations", "1", "--checkpoint-every", "1", "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    path = tmp_path_factory.mktemp("rec") / "r"
    assert main([*SIMULATE, "--rounds", "2", "--record", str(path)]) == 0
    return path


def _error(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    return code, err


def test_a_second_writer_of_a_record_is_refused_until_the_first_ends(record):
    meta = open_record(record).meta
    first = RecordWriter(record, meta)
    with pytest.raises(GradinvError, match=f"the record {record} is being written by process "
                                           f"{os.getpid()}"):
        RecordWriter(record, meta)
    first.close()
    with RecordWriter(record, meta) as again:  # resumes once the first has let go
        assert again.next_round == 2


def test_a_second_simulation_into_a_running_one_fails_at_once(tmp_path, capsys):
    """Two `fl simulate --record R` started seconds apart both ran and interleaved their
    rounds; now the second ends with one line while the first runs on (and SIGTERM ends the
    first with exit 143 and a record that resumes)."""
    rec = tmp_path / "r"
    argv = [*SIMULATE, "--rounds", "400", "--record", str(rec)]
    first = subprocess.Popen([sys.executable, "-m", "gradinv.cli", *argv],
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while "round_complete" not in _text(rec / "manifest.jsonl"):
            assert first.poll() is None and time.monotonic() < deadline, first.stderr.read()
            time.sleep(0.1)
        code, err = _error(capsys, argv)
        assert code == 2 and "is being written by process" in err and first.poll() is None
    finally:
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=60)
    assert first.returncode == 143 and err.strip() == "gradinv: terminated"
    record = open_record(rec)  # what the first wrote is one federation's, each update once
    keys = [(e.round, e.client_id) for e in record.entries()]
    assert keys and len(keys) == len(set(keys))


def _text(path):
    return path.read_text() if path.exists() else ""


def test_a_repeated_update_in_the_manifest_is_refused(record, tmp_path, capsys):
    copy = tmp_path / "dup"
    subprocess.run(["cp", "-r", str(record), str(copy)], check=True)
    lines = (copy / "manifest.jsonl").read_text().splitlines()
    lines.insert(1, lines[0])  # what two writers left: one update twice in round 0
    (copy / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    client = json.loads(lines[0])["client_id"]
    with pytest.raises(GradinvError, match=f"line 2 repeats the update of client {client} in "
                                           "round 0"):
        open_record(copy)
    code, err = _error(capsys, ["audit", str(copy), "--iterations", "2", "--quiet",
                                "--out", str(tmp_path / "o")])
    assert code == 2 and "repeats the update" in err and not (tmp_path / "o").exists()


def test_a_giml_checkpoint_refuses_another_record(record, tmp_path, capsys):
    other = tmp_path / "other"
    assert main([*SIMULATE, "--rounds", "1", "--seed", "1", "--record", str(other)]) == 0
    out = tmp_path / "giml"
    assert main([*LEARN, "--steps", "1", "--record", str(record), "--out", str(out)]) == 0
    saved = json.loads((out / "settings.json").read_text())["record"]
    assert saved == open_record(record).identity()
    code, err = _error(capsys, [*LEARN, "--steps", "2", "--record", str(other),
                                "--out", str(out)])
    assert code == 2 and "was learned from another record" in err
    assert main([*LEARN, "--steps", "2", "--record", str(record), "--out", str(out)]) == 0


def test_a_checkpoint_folder_is_locked_while_written(record, tmp_path, capsys):
    """`prior train` and `prior learn` hold their --out: a second run there is refused."""
    with FolderLock(tmp_path / "giml", "the GIML folder"):
        code, err = _error(capsys, [*LEARN, "--steps", "1", "--record", str(record), "--out",
                                    str(tmp_path / "giml")])
    assert code == 2 and "the GIML folder" in err and "is being written by" in err
    assert not (tmp_path / "giml" / "checkpoint.pt").exists()
    with FolderLock(tmp_path / "prior", "the prior-training folder"):
        code, err = _error(capsys, ["prior", "train", "--dataset", "default", "--epochs", "1",
                                    "--max-images", "16", "--batch-size", "8", "--width", "8",
                                    "--quiet", "--out", str(tmp_path / "prior")])
    assert code == 2 and "the prior-training folder" in err and "is being written by" in err
