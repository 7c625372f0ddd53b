"""Interrupted long work (issue 19, section 1): real signals to real `gradinv` processes. Each
must end with one line and the shell's code (130 for SIGINT, 143 for SIGTERM), leave no process
behind (workers, multiprocessing's resource tracker), and keep every unit that finished, so a
resume redoes only the rest; a Ray address nobody listens on fails at once."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from gradinv.audit.config import read_toml
from gradinv.audit.sweep import expand, finished
from gradinv.cli import main

SWEEP = """
[base]
model = "lenet"
image_size = 16
device = "cpu"
hyperparameters = { iterations = 1, restarts = 1 }

[grid]
attack = ["gi"]
seed = [0, 1, 2, 3, 4, 5, 6, 7]
"""
UNITS = 8


def _start(*argv):
    """`python -m gradinv.cli ...` in its own process group, as a shell runs a job in the
    foreground: Ctrl-C reaches it even where the tests themselves run as a background job,
    which a non-interactive shell starts with SIGINT ignored (and children inherit that)."""
    return subprocess.Popen([sys.executable, "-m", "gradinv.cli", *argv], start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_sigint_by_default)


def _sigint_by_default():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for(condition, process, seconds=180):
    """Poll ``condition`` while the job runs; a job that ends or hangs first fails the test,
    its whole group killed."""
    deadline = time.monotonic() + seconds
    while not condition():
        if process.poll() is not None or time.monotonic() > deadline:
            if _group(process):
                os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(f"the job ended or hung first: {process.communicate()}")
        time.sleep(0.05)


def _group(process) -> list[str]:
    """Processes left in the job's process group (its workers and resource tracker)."""
    found = subprocess.run(["pgrep", "-g", str(process.pid)], capture_output=True, text=True,
                           check=False)
    return found.stdout.split()


def _ended(process, seconds=60):
    """The job's exit code and stderr, once it and every process of its group have ended;
    whatever is left is killed, so a failing test leaves nothing running either."""
    try:
        _, err = process.communicate(timeout=seconds)
        deadline = time.monotonic() + 10  # the group's processes are reaped by now, or soon
        while _group(process) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = _group(process)
    finally:
        if _group(process):
            os.killpg(process.pid, signal.SIGKILL)
    assert not left, f"processes left running: {left}"
    return process.returncode, err


def _lines(path):
    return [json.loads(t) for t in path.read_text().splitlines()] if path.exists() else []


def _finished_folders(runs):
    """Run folders a worker completed (report.html is written last)."""
    return {str(f) for f in runs.iterdir() if (f / "report.html").exists()}


@pytest.mark.parametrize("sig,code,word,group", [
    (signal.SIGINT, 130, "interrupted", True),  # Ctrl-C: the terminal signals the whole job
    (signal.SIGTERM, 143, "terminated", False),  # kill PID: the parent alone
])
def test_interrupted_sweep_ends_its_workers_and_keeps_what_finished(tmp_path, sig, code, word,
                                                                     group):
    (tmp_path / "s.toml").write_text(SWEEP)
    out = tmp_path / "sweep"
    sweep = _start("sweep", str(tmp_path / "s.toml"), "--out", str(out), "--workers", "2",
                   "--quiet")
    _wait_for(lambda: len(_lines(out / "results.jsonl")) >= 1, sweep)
    (os.killpg if group else os.kill)(sweep.pid, sig)
    returncode, err = _ended(sweep)
    assert (returncode, err.strip()) == (code, f"gradinv: {word}")  # no worker tracebacks
    lines = _lines(out / "results.jsonl")
    assert 1 <= len(lines) < UNITS, "the queued runs were not stopped"
    assert {x["status"] for x in lines} == {"ok"}
    # every run a worker finished is recorded, and nothing runs on after the exit
    assert _finished_folders(out / "runs") <= {x["folder"] for x in lines}
    assert not (out / "pending").exists()  # unrecorded work is not left behind
    time.sleep(1)
    assert len(_lines(out / "results.jsonl")) == len(lines)
    runs = expand(read_toml(tmp_path / "s.toml"))  # a resume redoes only the rest
    assert finished(out, runs, retry_failed=False) == {x["id"] for x in lines}


def test_interrupted_audit_keeps_each_attacked_update_and_resumes(tmp_path, capsys):
    """`gradinv audit RECORD` on two workers, Ctrl-C after the first updates: what was attacked
    is in updates.jsonl, and the same command resumes the audit, attacking only the rest."""
    rec, out = tmp_path / "rec", tmp_path / "audits"
    assert main(["fl", "simulate", "--record", str(rec), "--model", "lenet", "--dataset",
                 "default", "--image-size", "16", "--clients", "2", "--rounds", "3",
                 "--batch-size", "1", "--test-images", "10", "--quiet"]) == 0
    argv = ["audit", str(rec), "--iterations", "20", "--device", "cpu", "--quiet", "--out",
            str(out)]
    audit = _start(*argv, "--workers", "2")

    def updates():
        return _lines(next(out.glob("*/updates.jsonl"), out / "none"))
    _wait_for(lambda: len(updates()) >= 1, audit)
    os.killpg(audit.pid, signal.SIGINT)
    returncode, err = _ended(audit)
    assert (returncode, err.strip()) == (130, "gradinv: interrupted")
    kept = updates()
    (folder,) = out.iterdir()
    assert 1 <= len(kept) < 6 and not (folder / "leakage.json").exists()
    assert _finished_folders(folder / "runs") <= {x["folder"] for x in kept}
    assert not (folder / "pending").exists()  # unrecorded work is not left behind
    with (folder / "updates.jsonl").open("a") as f:
        f.write('{"round": 2, "cli')  # what a SIGKILL mid-line would leave
    capsys.readouterr()
    assert main(argv) == 0
    assert f"resuming the audit in {folder}" in capsys.readouterr().out
    assert list(out.iterdir()) == [folder]
    lines = updates()
    assert len(lines) == 6 == len({(x["round"], x["client"]) for x in lines})
    assert len(json.loads((folder / "leakage.json").read_text())["updates"]) == 6


def test_sigterm_ends_a_ray_sweep_and_its_local_instance(tmp_path):
    """ray.init makes SIGTERM exit at once (no clean-up, no line): the sweep takes it back."""
    pytest.importorskip("ray")
    (tmp_path / "s.toml").write_text(SWEEP)
    out = tmp_path / "sweep"
    sweep = _start("sweep", str(tmp_path / "s.toml"), "--out", str(out), "--backend", "ray",
                   "--workers", "1", "--quiet")
    _wait_for(lambda: len(_lines(out / "results.jsonl")) >= 1, sweep)
    sweep.send_signal(signal.SIGTERM)
    returncode, err = _ended(sweep)  # Ray's processes too: they run in the job's group
    assert (returncode, err.strip()[-len("gradinv: terminated"):]) == (143, "gradinv: terminated")
    lines = _lines(out / "results.jsonl")
    assert 1 <= len(lines) < UNITS
    assert _finished_folders(out / "runs") <= {x["folder"] for x in lines}


def test_unreachable_ray_address_fails_fast_with_one_line(tmp_path, capsys):
    pytest.importorskip("ray")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "s.toml").write_text(SWEEP)
    started = time.monotonic()
    assert main(["sweep", str(tmp_path / "s.toml"), "--out", str(tmp_path / "o"), "--quiet",
                 "--backend", "ray", "--address", f"127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err
    assert time.monotonic() - started < 15
    assert err.startswith(f"gradinv: error: cannot reach a Ray cluster at 127.0.0.1:{port}")
    assert len(err.strip().splitlines()) == 1
