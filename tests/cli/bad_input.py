"""Bad input to the command line, as a new user would type it, for every subcommand: what the
tables in test_*_bad_input.py share (the base command lines, the files and records the cases
point at, how a case is run). conftest.py holds the record every table uses and the check.

Each case must end with exit code 2 and one line 'gradinv: error: ...' naming what is wrong (no
traceback, no hang), and must leave nothing behind: no run folder, record, prior folder or
file that was not there before. argparse's own errors (unknown option, a float where an int is
expected, a name outside ``choices``) end the same way, one line and no usage block; their
wording is argparse's, so no fragment is checked. Every case fails before an optimisation
starts.

A case is (base, extra arguments, fragment of the one error line; None: an argparse error).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import pickle
import shutil
import signal
from pathlib import Path

import torch
from torch import nn

from gradinv.cli import main
from gradinv.priors import DCGANGenerator

HUGE = str(2**64)
SECONDS_PER_CASE = 30  # a case still running after this is a hang

BASES = {
    "attack": ["attack", "--model", "lenet", "--image-size", "16", "--iterations", "2",
               "--restarts", "1", "--quiet", "--device", "cpu", "--out", "{out}"],
    "record": ["attack", "--record", "{rec}", "--round", "0", "--client", "{client}",
               "--iterations", "2", "--restarts", "1", "--quiet", "--device", "cpu",
               "--out", "{out}"],
    "record-bare": ["attack", "--record", "{rec}", "--iterations", "2", "--restarts", "1",
                    "--quiet", "--device", "cpu", "--out", "{out}"],
    "demo": ["demo", "--model", "lenet", "--iterations", "2", "--restarts", "1", "--quiet",
             "--device", "cpu", "--out", "{out}"],
    "fl": ["fl", "simulate", "--record", "{out}", "--model", "lenet", "--image-size", "16",
           "--rounds", "1", "--clients", "2", "--clients-per-round", "1", "--batch-size", "1",
           "--test-images", "10", "--quiet"],
    "train": ["prior", "train", "--dataset", "default", "--epochs", "1", "--batch-size", "8",
              "--max-images", "16", "--width", "8", "--latent-dim", "8", "--quiet",
              "--out", "{out}"],
    "learn": ["prior", "learn", "--record", "{rec}", "--latent-iterations", "2",
              "--adapt-iterations", "2", "--steps", "1", "--width", "8", "--latent-dim", "8",
              "--quiet", "--device", "cpu", "--out", "{out}"],
    "sweep": ["sweep", "--out", "{out}", "--quiet"],
    "none": [],
}


# -- what the cases point at ---------------------------------------------------------------

def _record_copy(tmp: Path, rec: Path, name: str, damage) -> Path:
    """A copy of the shared record with ``damage(copy)`` applied."""
    copy = tmp / name
    shutil.copytree(rec, copy)
    damage(copy)
    return copy


def _manifest_lines(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]


def _first_entry_file(root: Path, key: str) -> Path:
    return root / _manifest_lines(root)[0][key]["file"]


def _edit_meta(change):
    def damage(root: Path) -> None:
        meta = json.loads((root / "record.json").read_text())
        change(meta)
        (root / "record.json").write_text(json.dumps(meta))
    return damage


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def _private_file(root: Path) -> Path:
    line = (root / "private" / "manifest.jsonl").read_text().splitlines()[0]
    return root / json.loads(line)["file"]


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _torch_file(path: Path, content) -> Path:
    torch.save(content, path)
    return path


def _dir(path: Path) -> Path:
    path.mkdir()
    return path


RECORD_DAMAGE = {
    "rec_bad_json": lambda r: (r / "record.json").write_text("{not json"),
    "rec_wrong_format": _edit_meta(lambda m: m.update(format="something-else")),
    "rec_version": _edit_meta(lambda m: m.update(version=99)),
    "rec_no_model": _edit_meta(lambda m: m.pop("model")),
    "rec_manifest_garbage": lambda r: (r / "manifest.jsonl").write_text("garbage\n"),
    "rec_manifest_entry": lambda r: (r / "manifest.jsonl").write_text(
        '{"round": 0}\n{"round_complete": 0}\n'),
    "rec_no_manifest": lambda r: (r / "manifest.jsonl").unlink(),
    "rec_missing_update": lambda r: _first_entry_file(r, "update").unlink(),
    "rec_tampered_update": lambda r: _flip_last_byte(_first_entry_file(r, "update")),
    "rec_missing_broadcast": lambda r: _first_entry_file(r, "broadcast").unlink(),
    "rec_tampered_private": lambda r: _flip_last_byte(_private_file(r)),
    "rec_no_rounds": lambda r: (r / "manifest.jsonl").write_text(""),
}

# Hand-written run files (--config) and sweep files with one mistake each.
HAND_WRITTEN = {
    "run_threat_key": 'threat = { labelz = true }\n',
    "run_threat_scalar": 'threat = 3\n',
    "run_fedavg_key": 'update = "fedavg"\nfedavg = { lr = 0.1, epoch = 2 }\n',
    "run_prior_range": 'attack = "gias"\nprior = { source = "fashion-mnist", output_range = 1 }\n',
    "run_defenses_text": 'defenses = "prune"\n',
    "run_defense_table": 'defenses = [{ name = "prune", setting = { rate = 0.5 } }]\n',
    "run_hyper_typo": '[hyperparameters]\niteratons = 20\n',
    "run_hyper_value": '[hyperparameters]\nlr = -1\n',
    "run_attack_setting": '[attack_settings]\ngi = { lrr = 0.1 }\n',
    "sweep_hyper_value": '[base]\nhyperparameters = { iterations = 0 }\n',
    "sweep_attack_list": '[grid]\nattack = ["gi,gias"]\n',
    "sweep_repeated_seed": '[grid]\nseed = [0, 0]\n',
    "sweep_repeated_strength": '[grid.defense]\nprune = { rate = [0.5, 0.5] }\n',
    "sweep_base_defense": '[base]\ndefenses = ["clip:max_norm=4"]\n'
                          '[grid.defense]\nnone = {}\nprune = { rate = [0.5] }\n',
    "sweep_base_defenses_text": '[base]\ndefenses = "clip"\n[grid.defense]\nclip = {}\n',
    "sweep_settings_of_no_attack": '[base]\nattack_settings = { giaz = { lr = 1e-4 } }\n'
                                   '[grid]\nattack = ["gi", "gias"]\n',
    "sweep_hyper_of_no_attack": '[base]\nhyperparameters = { latent_iterations = 2 }\n'
                                '[grid]\nattack = ["gi", "dlg"]\n',
    "sweep_threat_key": '[base]\nthreat = { labelz = true }\n',
    "sweep_base_scalar": 'base = 3\n',
    "sweep_dp_utility": '[base]\nmodel = "lenet"\nimage_size = 16\n[grid.defense]\n'
                        'dp-noise = { epsilon = [1.0], max_norm = 1.0 }\n[utility]\nrounds = 2\n'
                        'num_clients = 2\nclients_per_round = 2\n',
    "sweep_dp_utility_counted": '[base]\nmodel = "lenet"\nimage_size = 16\n[grid.defense]\n'
                                'dp-noise = { epsilon = [1.0], max_norm = 1.0, rounds = 1 }\n'
                                '[utility]\nrounds = 2\nnum_clients = 2\nclients_per_round = 2\n',
}

FIXTURES = {
    "missing": lambda tmp, rec: tmp / "missing",
    "file": lambda tmp, rec: _write(tmp / "file.txt", b"not what you think\n"),
    "empty": lambda tmp, rec: _write(tmp / "empty.pt", b""),
    "corrupt_pt": lambda tmp, rec: _write(tmp / "corrupt.pt", b"PK\x03\x04 not a zip"),
    "emptydir": lambda tmp, rec: _dir(tmp / "emptydir"),
    "not_record": lambda tmp, rec: _write(tmp / "not_record" / "notes.txt", b"x").parent,
    "state_pt": lambda tmp, rec: _torch_file(tmp / "state.pt", {"w": torch.zeros(2)}),
    "module_pt": lambda tmp, rec: _torch_file(tmp / "module.pt", nn.Linear(2, 2)),
    "other_weights": lambda tmp, rec: _torch_file(
        tmp / "other.pt", DCGANGenerator(latent_dim=4, width=4).state_dict()),
    "prior_folder": lambda tmp, rec: _write(tmp / "learnt" / "generator.pt", b"x").parent,
    "run_folder": lambda tmp, rec: _write(tmp / "run" / "report.html", b"<html>").parent,
    "sweeps_parent": lambda tmp, rec: _write(tmp / "sweeps" / "s1" / "results.jsonl",
                                             b"").parents[1],
    "binary_results": lambda tmp, rec: _write(tmp / "bin" / "results.jsonl",
                                              b"\xff\xfe\x00binary").parent,
    "bad_images": lambda tmp, rec: _write(tmp / "images" / "a" / "x.png", b"not a png").parents[1],
    "one_class": lambda tmp, rec: _png(tmp / "one_class" / "cat" / "a.png").parents[1],
    "bad_cifar": lambda tmp, rec: _write(tmp / "cifar" / "test_batch",
                                         pickle.dumps([1, 2, 3])).parent,
    "corrupt_checkpoint": lambda tmp, rec: _write(tmp / "old" / "checkpoint.pt", b"junk").parent,
    "foreign_checkpoint": lambda tmp, rec: _torch_file(
        _dir(tmp / "foreign") / "checkpoint.pt",
        {"config": {"dataset": "other"}, "epoch": 1, "generator": {}, "discriminator": {},
         "opt_g": {}, "opt_d": {}, "rng": torch.get_rng_state()}).parent,
    **{name: (lambda tmp, rec, name=name, text=text: _write(tmp / f"{name}.toml", text.encode()))
       for name, text in HAND_WRITTEN.items()},
    **{name: (lambda tmp, rec, name=name, damage=damage:
              _record_copy(tmp, rec, name, damage))
       for name, damage in RECORD_DAMAGE.items()},
}


def _png(path: Path) -> Path:
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (16, 16), 128).save(path)
    return path


def case_argv(base: str, extra: list[str], tmp: Path, shared: tuple[Path, int, int]) -> list[str]:
    """The case's command line with every {placeholder} made real under ``tmp``."""
    rec, client, absent = shared
    values = {"out": tmp / "out", "rec": rec, "client": client, "absent_client": absent}
    argv = []
    for arg in BASES[base] + extra:
        for name, make in FIXTURES.items():
            if "{" + name + "}" in arg and name not in values:
                values[name] = make(tmp, rec)
        argv.append(arg.format(**{k: str(v) for k, v in values.items()}))
    return argv


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` with a hash of its content."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            if p.is_file() else "dir" for p in sorted(root.rglob("*"))}


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail a case that runs for longer than ``seconds`` (it would be a hang, or an attack)."""
    def stop(*_):
        raise TimeoutError(f"still running after {seconds} s")
    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def run_main(argv: list[str], capsys) -> tuple[int, str]:
    """Exit code and stderr of ``gradinv argv``, run in-process (argparse exits by SystemExit)."""
    try:
        with deadline(SECONDS_PER_CASE):
            code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


def case_id(case) -> str:
    base, extra, _ = case
    return f"{base}:{' '.join(extra) or '-'}"
