"""The on-disk record of a federation, and the reader attacks use.

A record is a directory any FL framework can write (see ``recorder.RecordWriter``)::

    record.json                                  format version, model (a gradinv architecture,
                                                 or a description of the user's own: names,
                                                 shapes, dtypes; never code), update kind,
                                                 threat model, federation settings, which
                                                 fields exist
    manifest.jsonl                               one line per observed update, then one
                                                 {"round_complete": r, ...} line per round
    rounds/round-00000.safetensors               the state the server broadcast in round 0 (once)
    updates/round-00000-client-0003.safetensors  what the server observed of client 3
    private/...                                  the clients' private batches (optional; read
                                                 only by ``gradinv.record.private``, never here)

Tensors are safetensors and metadata JSON, so loading a record never executes code. Every
tensor file is listed with its sha256 and checked when read. A round counts only once its
``round_complete`` line is written (after all its files), so a record cut off mid-round reads
as the rounds before.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from torch import nn

from ..checks import GradinvError
from ..types import DefenseSpec, FedAvgConfig, Observation, ThreatModel, UpdateKind
from .model import ModelDescription, ModelInfo, ModelSpec, model_from_json

FORMAT = "gradinv-fl-record"
VERSION = 2  # 2: the model may be a ModelDescription; records of an architecture stay version 1
META_FILE = "record.json"
MANIFEST = "manifest.jsonl"
PRIVATE_DIR = "private"
PRIVATE_MANIFEST = f"{PRIVATE_DIR}/manifest.jsonl"
UPDATE_PREFIX = "update/"
BN_MEAN_PREFIX, BN_VAR_PREFIX = "bn_mean/", "bn_var/"


def round_file(round: int) -> str:
    return f"rounds/round-{round:05d}.safetensors"


def update_file(round: int, client: int) -> str:
    return f"updates/round-{round:05d}-client-{client:04d}.safetensors"


def private_file(round: int, client: int) -> str:
    return f"{PRIVATE_DIR}/round-{round:05d}-client-{client:04d}.safetensors"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class FileRef:
    """A tensor file of the record (relative path) and the sha256 of its bytes."""

    file: str
    sha256: str

    def load(self, root: Path) -> dict[str, torch.Tensor]:
        """The file's tensors, after checking its bytes against the recorded hash."""
        path = root / self.file
        try:
            data = path.read_bytes()
        except OSError:
            raise GradinvError(f"record file {path} is missing or unreadable") from None
        if sha256(data) != self.sha256:
            raise GradinvError(f"record file {path} does not match its sha256 in the manifest "
                               "(tampered or truncated)")
        try:
            return load_safetensors(data)
        except SafetensorError as err:
            raise GradinvError(f"record file {path} is not a safetensors file ({err})") from None


@dataclass(frozen=True)
class RecordMeta:
    """What ``record.json`` says: everything shared by all updates of the record.

    ``data_channels`` are the dataset's own (reconstructions are scored in them); ``private``
    says whether the clients' batches were kept. ``federation`` holds the writer's own settings
    (for resuming and provenance); attacks read per-update facts only from the manifest, where
    withheld fields are absent.
    """

    model: ModelInfo
    update: UpdateKind
    threat: ThreatModel
    data_channels: int
    private: bool
    federation: dict
    privacy: dict | None = None  # the writer's DP account (fl.Federation.privacy), if any

    def to_json(self) -> dict:
        version = 1 if isinstance(self.model, ModelSpec) else VERSION  # as old readers expect
        data = {"format": FORMAT, "version": version, **asdict(self),
                "model": self.model.to_json(), "fields": self.fields()}
        if self.privacy is None:  # records without one read (and resume) as before
            del data["privacy"]
        return data

    def privacy_lines(self) -> list[str]:
        """The privacy account in words: per DP defense, the most and the least epsilon a
        client spends, and what the server sees in the clear anyway."""
        if self.privacy is None:
            return []
        p = self.privacy
        lines = []
        for d in p["defenses"]:
            spent = d["spent_epsilon"].values()
            budget = ("" if d["calibrated_epsilon"] is None
                      else f", calibrated to epsilon {d['calibrated_epsilon']:g}")
            lines.append(f"{d['name']} protects {d['protects']}: each client spends epsilon "
                         f"{min(spent):.3g} to {max(spent):.3g} at delta {d['delta']:g} over "
                         f"its {min(p['participations'].values())} to "
                         f"{max(p['participations'].values())} updates{budget} ({p['accountant']})")
        if p["in_the_clear"]:
            lines.append(f"not covered: the server is given the {', '.join(p['in_the_clear'])} "
                         "in the clear (the threat model grants them)")
        return lines

    def fields(self) -> dict:
        """A note, for readers of the files, of which fields this record holds."""
        t = self.threat
        granted = {"num_examples": t.num_images_known, "labels": t.labels_known,
                   "fedavg": t.local_hparams_known and self.update == "fedavg"}
        tensors = [UPDATE_PREFIX + "<parameter>"]
        if t.bn_stats_known:
            tensors += [BN_MEAN_PREFIX + "<layer>", BN_VAR_PREFIX + "<layer>"]
        return {"manifest": ["round", "client_id", "broadcast", "update"]
                + [name for name, known in granted.items() if known],
                "update_tensors": tensors, "private_batches": self.private}

    @classmethod
    def from_json(cls, data: dict) -> RecordMeta:
        return cls(model=model_from_json(data["model"]), update=data["update"],
                   threat=ThreatModel(**data["threat"]), data_channels=data["data_channels"],
                   private=data["private"], federation=data["federation"],
                   privacy=data.get("privacy"))


@dataclass(frozen=True)
class Entry:
    """One observed update as the manifest lists it; withheld facts are ``None``."""

    round: int
    client_id: int
    num_examples: int | None
    labels: list[int] | None
    fedavg: FedAvgConfig | None
    broadcast: FileRef
    update: FileRef
    # The client's defenses without their seeds, where the threat model says the server knows
    # them (``ThreatModel.defense_known``); absent otherwise, as other withheld facts.
    defenses: tuple[DefenseSpec, ...] | None = None

    def to_json(self) -> dict:
        line: dict = {"round": self.round, "client_id": self.client_id}
        for key in ("num_examples", "labels"):
            if getattr(self, key) is not None:
                line[key] = getattr(self, key)
        if self.fedavg is not None:
            line["fedavg"] = asdict(self.fedavg)
        if self.defenses is not None:
            line["defenses"] = [asdict(d) for d in self.defenses]
        return {**line, "broadcast": asdict(self.broadcast), "update": asdict(self.update)}

    @classmethod
    def from_json(cls, line: dict) -> Entry:
        fedavg, defenses = line.get("fedavg"), line.get("defenses")
        return cls(round=line["round"], client_id=line["client_id"],
                   num_examples=line.get("num_examples"), labels=line.get("labels"),
                   fedavg=None if fedavg is None else FedAvgConfig(**fedavg),
                   broadcast=FileRef(**line["broadcast"]), update=FileRef(**line["update"]),
                   defenses=None if defenses is None else tuple(DefenseSpec(**d)
                                                                for d in defenses))


def read_jsonl(path: Path) -> list[tuple[str, dict]]:
    """(text, value) of every whole line; a last line cut off mid-write (no newline) is dropped,
    any other line that is not JSON is an error."""
    try:
        text = path.read_text()
    except OSError:
        raise GradinvError(f"{path} is missing or unreadable") from None
    except UnicodeDecodeError:
        raise GradinvError(f"{path} is not a text file (JSON lines expected)") from None
    lines = text.split("\n")[:-1]  # what follows the last newline was never finished
    parsed = []
    for number, line in enumerate(lines, 1):
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            value = None
        if not isinstance(value, dict):
            raise GradinvError(f"{path} line {number} is not a JSON object")
        parsed.append((line, value))
    return parsed


def complete_lines(path: Path) -> list[tuple[str, dict]]:
    """The manifest lines up to the last ``round_complete``: an unfinished round is ignored."""
    lines = read_jsonl(path)
    ends = [i for i, (_, value) in enumerate(lines) if "round_complete" in value]
    return lines[:ends[-1] + 1] if ends else []


def read_meta(root: Path) -> RecordMeta:
    """record.json, with one clear error for anything that is not a record we can read."""
    if not root.is_dir():
        raise GradinvError(f"no record at {root} (not a directory)")
    path = root / META_FILE
    if not path.exists():
        state = "is empty" if not any(root.iterdir()) else f"has no {META_FILE}"
        raise GradinvError(f"{root} is not a gradinv record: it {state}")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise GradinvError(f"{path} is not valid JSON") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise GradinvError(f"{path} does not describe a {FORMAT}")
    if data.get("version") not in range(1, VERSION + 1):
        raise GradinvError(f"{path} has format version {data.get('version')!r}; this gradinv "
                           f"reads versions 1 to {VERSION}")
    try:
        return RecordMeta.from_json(data)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise GradinvError(f"{path} is malformed ({type(err).__name__}: {err})") from None


def update_tensors(observation: Observation) -> dict[str, torch.Tensor]:
    """The tensors of an update file: the observed update, and BatchNorm statistics when the
    threat model grants them (``Record.observation`` reads them back)."""
    tensors = {UPDATE_PREFIX + k: v for k, v in observation.tensors.items()}
    for layer, (mean, var) in (observation.bn_stats or {}).items():
        tensors[BN_MEAN_PREFIX + layer], tensors[BN_VAR_PREFIX + layer] = mean, var
    return tensors


class Record:
    """A federation record as an attacker sees it: metadata, observed updates, broadcasts.

    It has no access to the clients' private batches (see ``gradinv.record.private``).
    """

    def __init__(self, root: str | Path) -> None:
        self.path = Path(root)
        self.meta = read_meta(self.path)
        manifest = self.path / MANIFEST
        self._entries: list[Entry] = []
        self._complete: list[int] = []
        self._accuracy: dict[int, float] = {}
        self._states: dict[int, FileRef] = {}  # round -> state broadcast at its start
        self._lines = complete_lines(manifest)
        seen: set[tuple] = set()
        for number, (_, line) in enumerate(self._lines, 1):
            try:
                self._add(line)
            except (KeyError, TypeError, ValueError) as err:
                raise GradinvError(f"{manifest} line {number} is malformed "
                                   f"({type(err).__name__}: {err})") from None
            key = _line_key(line)
            if key in seen:  # two writers shared the folder, or a hand edit
                raise GradinvError(f"{manifest} line {number} repeats {_describe(key)} (written "
                                   "by two processes at once?); the record cannot be trusted, "
                                   "as its updates would count twice")
            seen.add(key)

    def identity(self) -> str:
        """The sha256 of record.json and the complete manifest: what was learned from or
        audited is this record as it is now (a resumed federation, with more rounds, differs)."""
        digest = hashlib.sha256((self.path / META_FILE).read_bytes())
        for text, _ in self._lines:
            digest.update(text.encode() + b"\n")
        return digest.hexdigest()

    def _add(self, line: dict) -> None:
        if "round_complete" in line:
            r = int(line["round_complete"])
            self._complete.append(r)
            if line.get("test_accuracy") is not None:  # a writer may not measure it
                self._accuracy[r] = float(line["test_accuracy"])
            self._states[r + 1] = FileRef(**line["state"])
        else:
            entry = Entry.from_json(line)
            self._entries.append(entry)
            self._states.setdefault(entry.round, entry.broadcast)

    def entries(self) -> list[Entry]:
        """Every observed update of the complete rounds, in the order they were recorded."""
        return list(self._entries)

    def rounds(self) -> list[int]:
        """The complete rounds."""
        return sorted(self._complete)

    def test_accuracy(self) -> dict[int, float]:
        """The global model's test accuracy after each complete round (where measured)."""
        return dict(self._accuracy)

    def state_file(self, round: int) -> FileRef:
        """The file of the global state at the start of ``round`` (what the server broadcast);
        one past the last complete round, the final model."""
        if round not in self._states:
            raise GradinvError(f"{self.path} holds no global state for round {round}")
        return self._states[round]

    def global_state(self, round: int) -> dict[str, torch.Tensor]:
        """The global model state at the start of ``round``, in the model's key order."""
        return self._in_model_order(self.state_file(round).load(self.path))

    def entry(self, round: int, client: int) -> Entry:
        """The manifest entry of ``client``'s update in ``round``."""
        found = [e for e in self._entries if (e.round, e.client_id) == (round, client)]
        if not found:
            seen = sorted(e.client_id for e in self._entries if e.round == round)
            where = (f"round {round} observed clients {', '.join(map(str, seen))}" if seen
                     else f"complete rounds: {', '.join(map(str, self.rounds())) or 'none'}")
            raise GradinvError(f"{self.path} has no update of client {client} in round {round} "
                               f"({where})")
        return found[0]

    def observation(self, round: int, client: int) -> Observation:
        """What the server observed of ``client`` in ``round``, as the threat model allows."""
        entry = self.entry(round, client)
        tensors = entry.update.load(self.path)
        bn_layers = self._in_layer_order([k[len(BN_MEAN_PREFIX):] for k in tensors
                                          if k.startswith(BN_MEAN_PREFIX)])
        threat = self.meta.threat
        return Observation(
            kind=self.meta.update,
            tensors=self._in_model_order({k[len(UPDATE_PREFIX):]: v for k, v in tensors.items()
                                          if k.startswith(UPDATE_PREFIX)}),
            threat=threat,
            labels=None if entry.labels is None else torch.tensor(entry.labels, dtype=torch.long),
            num_images=entry.num_examples,
            fedavg=entry.fedavg,
            broadcast=self._in_model_order(entry.broadcast.load(self.path)),
            bn_stats={n: (tensors[BN_MEAN_PREFIX + n], tensors[BN_VAR_PREFIX + n])
                      for n in bn_layers} if threat.bn_stats_known else None,
            round=round,
            client_id=client,
            defenses=entry.defenses if threat.defense_known else None,
        )

    def observations(self, entries: list[Entry] | None = None) -> "RecordObservations":
        """The observed updates (all, or ``entries``) as a sequence read from disk on access,
        so a long record never has to fit in memory (GIML walks it update by update). Every
        file they need must exist now, so a walk does not fail halfway on a missing one (the
        contents are checked against their sha256 when read)."""
        chosen = self.entries() if entries is None else entries
        for ref in dict.fromkeys(ref for e in chosen for ref in (e.broadcast, e.update)):
            if not (self.path / ref.file).is_file():
                raise GradinvError(f"record file {self.path / ref.file} is missing (listed in "
                                   f"{self.path / MANIFEST})")
        return RecordObservations(self, chosen)

    def build_model(self) -> nn.Module:
        """The recorded architecture (attacks take the weights from ``observation.broadcast``);
        a record of the user's own model refuses (see ``ModelDescription.build``)."""
        return self.meta.model.build()

    @cached_property
    def description(self) -> ModelDescription:
        """The recorded model's state dict: names, shapes, dtypes, parameters or buffers."""
        return self.meta.model.describe()

    def _in_model_order(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """safetensors returns keys sorted by dtype and name; the model's order keeps sums over
        layers (matching costs) identical to the live run's."""
        return {k: tensors[k] for k in self.description.shapes() if k in tensors}

    def _in_layer_order(self, layers: list[str]) -> list[str]:
        """Layer names in the order their state first appears in the model."""
        first: dict[str, int] = {}
        for i, name in enumerate(self.description.shapes()):
            first.setdefault(name.rpartition(".")[0], i)
        return sorted(layers, key=lambda layer: (first.get(layer, len(first)), layer))


def _line_key(line: dict) -> tuple:
    """What a manifest line records once only: a round's end, or one client's update in it."""
    if "round_complete" in line:
        return ("end", int(line["round_complete"]))
    return ("update", line["round"], line["client_id"])


def _describe(key: tuple) -> str:
    return (f"the end of round {key[1]}" if key[0] == "end"
            else f"the update of client {key[2]} in round {key[1]}")


class RecordObservations(Sequence[Observation]):
    """A lazy, indexable view of a record's observed updates."""

    def __init__(self, record: Record, entries: list[Entry]) -> None:
        self.record, self.entries = record, entries

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return RecordObservations(self.record, self.entries[index])
        entry = self.entries[index]
        return self.record.observation(entry.round, entry.client_id)


def open_record(path: str | Path) -> Record:
    """Open a federation record for reading; one clear ``GradinvError`` if it is not one."""
    return Record(path)
