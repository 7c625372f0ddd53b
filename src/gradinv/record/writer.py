"""Writing a federation record incrementally, so that a run cut off mid-round resumes.

Order of writes: a tensor file (to a temporary name, then renamed) before the manifest line that
lists it; a round's ``round_complete`` line last, after the file of the state the round ends
with. A crash therefore leaves at worst an unfinished round: readers ignore it and reopening
the record discards it.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import save as save_safetensors

from ..files import LOCK_FILE, TMP_SUFFIX, FolderLock, write_atomic
from ..checks import GradinvError
from ..types import Observation, PrivateBatch
from .format import (MANIFEST, META_FILE, PRIVATE_MANIFEST, Entry, FileRef, RecordMeta,
                     complete_lines, open_record, private_file, read_jsonl, round_file, sha256,
                     update_file, update_tensors)


class RecordWriter:
    """Appends rounds to the record at ``root``; a record written with the same ``meta`` is
    resumed after its last complete round (``next_round``, ``resume_state``). The record is
    locked until ``close`` (or the process ends): a second writer is refused, as two would
    interleave their rounds in one manifest."""

    def __init__(self, root: str | Path, meta: RecordMeta) -> None:
        self.root = Path(root)
        self.meta = meta
        self.next_round = 0
        self.resume_state: dict[str, torch.Tensor] | None = None
        self._states: dict[int, FileRef] = {}
        if self.root.exists() and not self.root.is_dir():
            raise GradinvError(f"{self.root} is a file; a record needs a folder")
        self._lock = FolderLock(self.root, "the record")
        try:
            if any(p.name != LOCK_FILE for p in self.root.iterdir()):
                self._resume()
            else:
                self._create()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Let another writer have the record."""
        self._lock.release()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _create(self) -> None:
        write_atomic(self.root / META_FILE, _meta_bytes(self.meta))
        write_atomic(self.root / MANIFEST, b"")
        if self.meta.private:
            write_atomic(self.root / PRIVATE_MANIFEST, b"")

    def _resume(self) -> None:
        record = open_record(self.root)
        stored = json.loads((self.root / META_FILE).read_text())
        wanted = json.loads(_meta_bytes(self.meta))
        if stored != wanted:
            raise GradinvError(f"the record at {self.root} was written with other settings "
                               f"({_listed(_differences(stored, wanted))}); choose another "
                               "folder")
        if record.rounds():
            self.next_round = record.rounds()[-1] + 1
            self._states[self.next_round] = record.state_file(self.next_round)
            self.resume_state = record.global_state(self.next_round)
        for stray in self.root.rglob(f"*{TMP_SUFFIX}"):  # left by a process that was killed
            stray.unlink()
        kept = complete_lines(self.root / MANIFEST)
        write_atomic(self.root / MANIFEST, "".join(text + "\n" for text, _ in kept).encode())
        if self.meta.private:
            kept = [(t, v) for t, v in read_jsonl(self.root / PRIVATE_MANIFEST)
                    if isinstance(v.get("round"), int) and v["round"] < self.next_round]
            write_atomic(self.root / PRIVATE_MANIFEST,
                         "".join(text + "\n" for text, _ in kept).encode())

    def add_update(self, observation: Observation, batch: PrivateBatch | None = None) -> None:
        """Record one observed update (and, if the record keeps them, the client's batch)."""
        r, c = observation.round, observation.client_id
        if r not in self._states:
            self._states[r] = self._write(round_file(r), observation.broadcast)
        update = self._write(update_file(r, c), update_tensors(observation))
        if self.meta.private:
            if batch is None:
                raise GradinvError(f"the record at {self.root} keeps private batches: pass the "
                                   "client's batch with its update")
            ref = self._write(private_file(r, c), {"images": batch.images, "labels": batch.labels})
            self._append(PRIVATE_MANIFEST, {"round": r, "client_id": c, **asdict(ref)})
        entry = Entry(round=r, client_id=c, num_examples=observation.num_images,
                      labels=None if observation.labels is None else observation.labels.tolist(),
                      fedavg=observation.fedavg, broadcast=self._states[r], update=update,
                      defenses=observation.defenses)
        self._append(MANIFEST, entry.to_json())

    def complete_round(self, round: int, state: dict[str, torch.Tensor],
                       test_accuracy: float | None) -> None:
        """Close ``round``: ``state`` is the global model it ends with (next round's broadcast)."""
        self._states[round + 1] = self._write(round_file(round + 1), state)
        self._append(MANIFEST, {"round_complete": round, "test_accuracy": test_accuracy,
                                "state": asdict(self._states[round + 1])})

    def _write(self, name: str, tensors: dict[str, torch.Tensor]) -> FileRef:
        # No safetensors metadata: it is written in hash order, which would make files differ
        # between runs. Metadata lives in the JSON files.
        data = save_safetensors({k: v.detach().cpu().clone(memory_format=torch.contiguous_format)
                                 for k, v in tensors.items()})
        write_atomic(self.root / name, data)
        return FileRef(name, sha256(data))

    def _append(self, name: str, line: dict) -> None:
        with open(self.root / name, "a") as f:
            f.write(json.dumps(line) + "\n")
            f.flush()
            os.fsync(f.fileno())


def _meta_bytes(meta: RecordMeta) -> bytes:
    return (json.dumps(meta.to_json(), indent=2) + "\n").encode()


def _differences(stored: object, wanted: object, path: str = "") -> list[str]:
    """'federation.rounds: recorded 5, now 3' for every setting that differs: one changed
    option (a model) can change others it implies (its initialisation), and the first of
    those alone would not name the one the user changed."""
    if isinstance(stored, dict) and isinstance(wanted, dict):
        return [line for key in sorted(set(stored) | set(wanted))
                if stored.get(key) != wanted.get(key)
                for line in _differences(stored.get(key), wanted.get(key), f"{path}{key}.")]
    return [f"{path.rstrip('.')}: recorded {stored!r}, now {wanted!r}"]


def _listed(lines: list[str], most: int = 4) -> str:
    return "; ".join(lines[:most]) + (f"; and {len(lines) - most} more" if len(lines) > most
                                      else "")
