"""Reading and writing torch files that users hand over (priors, weights, checkpoints).

Every load uses ``weights_only=True``: unpickling a file someone else wrote can run arbitrary
code, so only tensors and plain containers are read. Every way such a file can be wrong (missing,
empty, truncated, not a torch file, a whole pickled ``nn.Module``, weights of another
architecture) ends in one ``GradinvError`` line naming the file. Writes are atomic, so an
interrupted run never leaves a half-written checkpoint behind. Output folders are checked
before a run starts (``check_writable``), so a bad ``--out`` costs nothing and leaves nothing.
A folder that one command writes over time (a record, a checkpoint folder) is locked while it
is written (``FolderLock``), so a second writer fails at once instead of interleaving.
"""
from __future__ import annotations

import fcntl
import io
import json
import os
import pickle
import socket
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import IO

import torch
from torch import nn

from .checks import GradinvError, one_line


def load_torch_file(path: str | Path, what: str) -> object:
    """The content of a file written by ``torch.save``; ``what`` names it in errors."""
    path = Path(path)
    if not path.exists():
        raise GradinvError(f"{what} {path} does not exist")
    if path.is_dir():
        inside = sorted(str(p) for p in path.glob("*.pt"))
        raise GradinvError(f"{what} {path} is a folder, not a file"
                           + (f" (its files: {', '.join(inside)})" if inside else ""))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001  (torch raises many types for one broken file)
        raise GradinvError(f"{what} {path} {_why_unreadable(err)}") from None


def check_writable(out: str | Path, *, name: str = "out") -> None:
    """Refuse an output folder that cannot be created or written *before* spending a run's time
    on it. The nearest existing folder is probed by creating and removing a temporary folder in
    it (permission bits alone say nothing for root, nor for read-only file systems); nothing is
    left behind either way. ``name``: the parameter that gave it, for the error."""
    if not isinstance(out, (str, os.PathLike)):
        raise GradinvError(f"{name} must be a folder path (str or Path), not "
                           f"{type(out).__name__} {out!r}")
    path = Path(out)
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise GradinvError(f"cannot write results under {out}: {existing} is not a folder")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".gradinv-probe-", dir=existing))
    except OSError as err:
        raise GradinvError(f"cannot write results under {out}: {existing} is not writable "
                           f"({err.strerror})") from None


TMP_SUFFIX = ".tmp"


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write to a temporary name (ending ``TMP_SUFFIX``), then rename: readers see the old file
    or the new one, and a crash never leaves a half-written file under the real name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")
    try:
        with open(temporary, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def save_torch_file(content: object, path: str | Path) -> None:
    """``torch.save``, written atomically (``write_atomic``)."""
    buffer = io.BytesIO()
    torch.save(content, buffer)
    write_atomic(path, buffer.getvalue())


def load_weights(module: nn.Module, state: object, source: str) -> None:
    """Load a state dict into ``module``; one line naming ``source`` when it does not fit."""
    if not isinstance(state, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise GradinvError(f"{source} does not hold a state dict (parameter names -> tensors)")
    problems = _mismatches(module.state_dict(), state)
    if problems:
        more = f" (and {len(problems) - 1} more differences)" if len(problems) > 1 else ""
        raise GradinvError(f"{source} holds weights for another architecture: {problems[0]}{more}")
    module.load_state_dict(dict(state))


def _mismatches(expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor]) -> list[str]:
    problems = [f"{k!r} is missing" for k in expected if k not in given]
    problems += [f"{k!r} is not in the model" for k in given if k not in expected]
    problems += [f"{k!r} has shape {tuple(given[k].shape)}, the model {tuple(v.shape)}"
                 for k, v in expected.items() if k in given and given[k].shape != v.shape]
    return problems


def _why_unreadable(err: Exception) -> str:
    if isinstance(err, pickle.UnpicklingError) and "Weights only load failed" in str(err):
        return ("holds pickled Python objects (such as a whole model saved with torch.save(model)), "
                "which are not loaded because unpickling can run code; save model.state_dict()")
    return f"is not a readable torch file (empty, truncated or corrupt; {one_line(err)})"


LOCK_FILE = ".gradinv.lock"


class FolderLock:
    """An exclusive lock on ``folder`` (created if needed) while one process writes it: a
    second writer, in this process or another, gets one clear error instead of mixing its
    files in. The lock is the kernel's (``flock`` on ``LOCK_FILE``), so it ends with its
    process however that ends; ``release`` ends it sooner and removes the file, so that a
    command that fails leaves nothing behind."""

    def __init__(self, folder: str | Path, what: str) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self._path = folder / LOCK_FILE
        self._file = open(self._path, "a+")  # noqa: SIM115 - held until release
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if not self._holds_the_named_file():  # released and removed while we opened it
                raise BlockingIOError
        except BlockingIOError:
            self._file.seek(0)
            holder = self._file.read().strip() or "another process"
            self._file.close()
            raise GradinvError(f"{what} {folder} is being written by {holder}; wait for it to "
                               "end, or choose another folder") from None
        self._file.truncate(0)
        self._file.write(f"process {os.getpid()} on {socket.gethostname()}")
        self._file.flush()

    def _holds_the_named_file(self) -> bool:
        """Whether the locked file is still the one named ``LOCK_FILE`` (a writer releasing
        its lock removes the name first)."""
        try:
            return os.stat(self._path).st_ino == os.fstat(self._file.fileno()).st_ino
        except FileNotFoundError:
            return False

    def release(self) -> None:
        if self._file.closed:
            return
        self._path.unlink(missing_ok=True)  # while still locked: no one else holds this name
        self._file.close()  # closing the file ends the lock

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def keep_log_lines(path: Path, key: str, last: int) -> None:
    """Keep the lines of the JSON-lines log ``path`` whose ``key`` is at most ``last``: a run
    resumed from its checkpoint redoes what came after it, which must not be logged twice (a
    line torn by a kill goes too). No file: nothing to do."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)[key] <= last:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue
    path.write_text("".join(line + "\n" for line in kept))


def append_lines(path: str | Path) -> IO[str]:
    """``path`` opened to append lines, after cutting a last line torn by a kill (no newline):
    a line appended to it would be glued to the torn one and spoil both."""
    path = Path(path)
    if path.exists():
        data = path.read_bytes()
        whole = data.rfind(b"\n") + 1
        if whole < len(data):
            with path.open("r+b") as f:
                f.truncate(whole)
    return path.open("a")


# Where workers write a unit's run folder; it moves to RUNS (``claim_folder``) as its result is
# recorded, so an interrupt while workers write (or before their results arrive) leaves no
# finished folder in RUNS that the results do not list; what pending/ holds is redone on resume.
PENDING = "pending"


def claim_folder(pending: Path, runs: Path) -> Path:
    """Move a worker's finished run folder into ``runs`` under its own name (``-1``, ``-2``,
    ... appended when taken, as ``new_run_dir`` does). A worker writes where nothing is
    recorded and the main process claims the folder as it records the result, so an
    interrupt between the two leaves no unrecorded finished folder among the recorded ones."""
    runs.mkdir(exist_ok=True)
    target, k = runs / pending.name, 1
    while target.exists():
        target, k = runs / f"{pending.name}-{k}", k + 1
    pending.rename(target)
    return target
