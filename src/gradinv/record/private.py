"""The clients' private batches kept in a record: ground truth for evaluation only.

This lives apart from ``format.Record`` on purpose: attacks read records through ``Record``,
which cannot reach these batches, and nothing on the attack path imports this module.
"""
from __future__ import annotations

from pathlib import Path

from ..checks import GradinvError
from ..types import PrivateBatch
from .format import PRIVATE_DIR, PRIVATE_MANIFEST, FileRef, open_record, read_jsonl


def load_private_batch(record_dir: str | Path, round: int, client: int) -> PrivateBatch | None:
    """The batch ``client`` used in ``round``, or None when the record holds no private batches
    (written without them, or shared without its ``private/`` folder)."""
    record = open_record(record_dir)
    record.entry(round, client)  # the update must be in a complete round
    root = Path(record_dir)
    if not record.meta.private or not (root / PRIVATE_DIR).is_dir():
        return None
    path = root / PRIVATE_MANIFEST
    found = [v for _, v in read_jsonl(path)
             if (v.get("round"), v.get("client_id")) == (round, client)]
    if not found:
        raise GradinvError(f"{path} lists no private batch of client {client} in round {round}")
    try:
        tensors = FileRef(found[-1]["file"], found[-1]["sha256"]).load(root)
        return PrivateBatch(tensors["images"], tensors["labels"])
    except (KeyError, TypeError) as err:
        raise GradinvError(f"{path} or its batch file is malformed ({err})") from None
