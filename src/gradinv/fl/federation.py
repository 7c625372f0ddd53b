"""A simulated federation: clients holding disjoint shards of a train split, and a server that
trains the global model round by round from their FedSGD gradients or FedAvg deltas.

Updates are produced as in a deployment (from the global model of *that* round, on data the
client holds), so leakage can be audited at any point of training, not only at initialisation.
Clients may apply defenses before sending (``FederationConfig.defenses``), so the utility a
defense costs can be measured as the accuracy a federation trained with it reaches. Everything
is seeded: the same config gives a bit-identical record (random defenses draw from their own
``seed`` setting and the federation's seed, per round and client).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..checks import MAX_RATE, GradinvError, check_bool, check_choice, check_float, check_int
from ..data import check_has_splits, load_dataset, to_model_input
from ..data.partition import PARTITIONS, partition
from ..defenses.base import ClientContext
from ..defenses.pipeline import DefensePipeline, over_federation
from ..execution import fp32_precision
from ..files import check_writable
from ..models import DEFAULT_WIDTH, build_model
from ..progress import Progress
from ..record.format import Record, RecordMeta, open_record
from ..record.model import ModelSpec
from ..record.writer import RecordWriter
from ..types import (ClientUpdate, DefenseSpec, FedAvgConfig, Observation, PrivateBatch,
                     ThreatModel, UpdateKind, resolve_fedavg)
from .client import check_threat_fits, compute_update, observe
from .functional import FunctionalModel
from .victim import VictimConfig

# Defaults of the settings that apply to some federations only (FederationConfig holds None
# for them until it knows whether they apply): the width of a ConvNet or ResNet-18 (narrower
# than build_model's, as a federation trains many rounds), the Dirichlet concentration, the
# classes per client of the 'classes' partition, FedSGD's server step size, and how many test
# images score each round (at most: a smaller test split is used whole).
WIDTH, ALPHA, CLASSES_PER_CLIENT, SERVER_LR, TEST_IMAGES = 16, 0.5, 2, 0.1, 1000
CLIENTS_PER_ROUND = 4  # sampled each round (all clients of a smaller federation)

UpdateHook = Callable[[Observation, PrivateBatch], None]
RoundHook = Callable[[int, dict[str, torch.Tensor], float], None]


@dataclass(frozen=True)
class FederationConfig(VictimConfig):
    """Everything that defines a simulated federation; saved in its record.

    Clients compute in train mode by default, as in deployments: BatchNorm then normalises with
    batch statistics (the running statistics are never averaged, see ``aggregate``).

    ``defenses``: what every client applies to its update before sending, in order (specs,
    ``"name:key=value,..."`` strings or ``(name, settings)`` pairs; stored as specs with every
    setting as it runs).
    """

    model: str = "convnet"
    image_size: int = 28
    channels: int = 1
    num_clients: int = 10
    partition: str = "iid"
    alpha: float | None = None
    classes_per_client: int | None = None
    clients_per_round: int | None = None  # None: CLIENTS_PER_ROUND, or all if fewer
    rounds: int = 30
    update: UpdateKind = "fedsgd"
    batch_size: int = 16
    fedavg: FedAvgConfig | None = None
    server_lr: float | None = None
    threat: ThreatModel = field(default_factory=lambda: ThreatModel(model_mode="train"))
    defenses: tuple[DefenseSpec, ...] = ()
    test_images: int | None = None
    store_private: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.width is None and self.model != "lenet":
            object.__setattr__(self, "width", WIDTH)
        check_has_splits(self.dataset, "a federation (clients train on train, accuracy is "
                         "measured on test)")
        for name in ("num_clients", "rounds", "batch_size"):
            check_int(name, getattr(self, name), low=1)
        check_int("test_images", self.test_images, low=1, optional=True)
        if self.clients_per_round is None:
            object.__setattr__(self, "clients_per_round", min(CLIENTS_PER_ROUND, self.num_clients))
        check_int("clients_per_round", self.clients_per_round, low=1, high=self.num_clients)
        check_int("seed", self.seed, low=0, high=2**63 - 1)
        check_bool("store_private", self.store_private)
        if not isinstance(self.threat, ThreatModel):
            raise GradinvError(f"threat must be a ThreatModel, not {type(self.threat).__name__}")
        object.__setattr__(self, "fedavg", resolve_fedavg(self.update, self.fedavg, self.threat))
        self._check_defenses()
        check_choice("partition", self.partition, PARTITIONS)
        self._only_where("alpha", ALPHA, self.partition == "dirichlet", "--partition dirichlet")
        self._only_where("classes_per_client", CLASSES_PER_CLIENT, self.partition == "classes",
                         "--partition classes")
        self._only_where("server_lr", SERVER_LR, self.update == "fedsgd",
                         "--update fedsgd (FedAvg applies the clients' mean delta)")
        check_float("alpha", self.alpha, low=0, low_open=True, optional=True)
        check_int("classes_per_client", self.classes_per_client, low=1, optional=True)
        check_float("server_lr", self.server_lr, low=0, low_open=True, high=MAX_RATE,
                    optional=True)

    def _check_defenses(self) -> None:
        """Normalise the defenses, and refuse before any round runs what would fail in the
        first one: a defense that changes the local computation (DP-SGD) checks the client's
        model when it builds its gradient, so it is built once here on the victim."""
        most = max(participations(self).values())
        pipeline = DefensePipeline.for_client(
            over_federation(self.defenses, most, self.local_steps), self.threat)
        object.__setattr__(self, "defenses", pipeline.specs)
        if pipeline.local is not None:
            model = build_model(self.model, channels=self.channels, num_classes=2,
                                image_size=self.image_size, width=self.width,
                                init_scheme=self.init_scheme)
            empty = torch.empty(0)
            pipeline.client_gradient(ClientContext(
                FunctionalModel(model, self.threat.model_mode), empty, empty))  # type: ignore[arg-type]

    @property
    def local_steps(self) -> int:
        """The local steps each example of a client's batch takes part in per update (FedSGD:
        1; FedAvg: one per epoch), what DP-SGD's accounting counts."""
        return 1 if self.fedavg is None else self.fedavg.epochs

    def _only_where(self, name: str, default: object, applies: bool, where: str) -> None:
        """A setting that only ``applies`` to some federations (``where``) defaults to
        ``default`` there and stays None elsewhere, where a given value, which would be
        recorded but never used, is refused."""
        value = getattr(self, name)
        if not applies and value is not None:
            raise GradinvError(f"--{name.replace('_', '-')} only applies to {where}")
        if applies and value is None:
            object.__setattr__(self, name, default)


class Federation:
    """The clients' data, the test subset and the global model of one federation. The
    server's model stays on the CPU; the clients compute, and the test accuracy is computed,
    on ``device``."""

    def __init__(self, config: FederationConfig, device: torch.device = torch.device("cpu")
                 ) -> None:
        self.device = device
        train = load_dataset(config.dataset, data_dir=config.data_dir, split="train")
        test = load_dataset(config.dataset, data_dir=config.data_dir, split="test")
        # The config records the test images actually used.
        self.config = c = replace(config, test_images=scored_test_images(config.test_images,
                                                                         len(test)))
        self.train = train
        self.clients = partition(train.labels, c.num_clients, scheme=c.partition, alpha=c.alpha,
                                 classes_per_client=c.classes_per_client, seed=c.seed)
        self.test = PrivateBatch(to_model_input(test.images[:c.test_images], c.image_size,
                                                c.channels), test.labels[:c.test_images])
        self.model = build_model(c.model, channels=c.channels, num_classes=train.num_classes,
                                 image_size=c.image_size, width=c.width, seed=c.seed,
                                 init_scheme=c.init_scheme)
        self.defenses = DefensePipeline.from_specs(c.defenses)
        check_threat_fits(c.threat, self.model)
        largest = max(len(shard) for shard in self.clients)
        if c.batch_size > largest:
            raise GradinvError(f"batch_size {c.batch_size} is more than any client holds (at "
                               f"most {largest} images): each would use its whole shard while "
                               f"the record says {c.batch_size}; give --batch-size {largest} "
                               "or less")

    def short_shards(self) -> list[int]:
        """The clients holding fewer images than ``batch_size``: they use all of theirs."""
        return [i for i, shard in enumerate(self.clients) if len(shard) < self.config.batch_size]

    def record_meta(self) -> RecordMeta:
        """What this federation's record says about it (see ``record.RecordMeta``)."""
        c = self.config
        spec = ModelSpec(name=c.model, width=c.width or DEFAULT_WIDTH[c.model],
                         channels=c.channels, num_classes=self.train.num_classes,
                         image_size=c.image_size, init_scheme=str(c.init_scheme))
        return RecordMeta(model=spec, update=c.update, threat=c.threat,
                          data_channels=self.train.channels, private=c.store_private,
                          federation=asdict(c), privacy=self.privacy())

    def privacy(self) -> dict | None:
        """The record's privacy account (None without a DP defense): each client's
        participations over the whole federation and, per DP defense, the epsilon each client
        spends over them (the PLD accountant composing them; a record cut off early spent at
        most that), with how clients are sampled and what the server sees in the clear."""
        c = self.config
        counts = participations(c)
        defenses = self.defenses.privacy(counts, c.local_steps)
        if not defenses:
            return None
        return {"accountant": "dp-accounting PLD, composed over each client's participations",
                "sampling": f"fixed-size: {c.clients_per_round} of {c.num_clients} clients each "
                            "round, uniformly without replacement from a seeded schedule; the "
                            "server knows who sent each update, so no amplification by "
                            "sampling is claimed",
                "participations": {str(k): v for k, v in counts.items()},
                "defenses": defenses, "in_the_clear": in_the_clear(c.threat)}

    def client_batch(self, client: int, rng: np.random.Generator) -> PrivateBatch:
        """A batch drawn without replacement from the client's own shard (all of it if small)."""
        shard = self.clients[client]
        index = torch.from_numpy(rng.choice(shard, min(self.config.batch_size, len(shard)),
                                            replace=False))
        images = to_model_input(self.train.images[index], self.config.image_size,
                                self.config.channels)
        return PrivateBatch(images, self.train.labels[index])

    def run_round(self, round: int, on_update: UpdateHook | None = None) -> float:
        """Broadcast, let the sampled clients compute, aggregate; returns the test accuracy."""
        c = self.config
        clients, rng = sample_clients(c, round)
        updates = []
        for client in clients:
            batch = self.client_batch(int(client), rng)
            update = compute_update(self.model, batch, kind=c.update, fedavg=c.fedavg,
                                    mode=c.threat.model_mode, round=round, client_id=int(client),
                                    defenses=self.defenses, seed=c.seed, device=self.device)
            if on_update is not None:
                on_update(observe(update, c.threat), batch)
            updates.append(update)
        state = aggregate(self.model.state_dict(), updates, server_lr=c.server_lr)
        self.model.load_state_dict(state)
        return accuracy(self.model, self.test, mode=c.threat.model_mode, device=self.device)

    def run(self, *, start_round: int = 0, state: dict[str, torch.Tensor] | None = None,
            on_update: UpdateHook | None = None, on_round: RoundHook | None = None,
            progress: bool = True, log: Callable[[str], None] = print) -> dict[int, float]:
        """Rounds ``start_round`` .. ``rounds - 1`` from ``state`` (default: the seeded initial
        model); ``on_round(round, state, accuracy)`` sees the state each round ends with."""
        if state is not None:
            self.model.load_state_dict(state)
        bar = Progress("federation", self.config.rounds, enabled=progress, metric="accuracy")
        history = {}
        for r in range(start_round, self.config.rounds):
            with fp32_precision():
                history[r] = self.run_round(r, on_update)
            if on_round is not None:
                on_round(r, self.model.state_dict(), history[r])
            log(f"round {r}: test accuracy {history[r]:.4f}")
            bar.update(r + 1, history[r])
        return history


def sample_clients(config: FederationConfig,
                   round: int) -> tuple[np.ndarray, np.random.Generator]:
    """The clients of ``round`` (a fixed-size sample, uniformly without replacement, sorted)
    and the round's generator, which then draws their batches: seeded per round, so a resumed
    run draws the same, and the schedule is known before any round runs."""
    rng = np.random.default_rng([config.seed, round])
    return np.sort(rng.choice(config.num_clients, config.clients_per_round, replace=False)), rng


def participations(config: FederationConfig) -> dict[int, int]:
    """How many updates each client sends over the whole federation (0 included)."""
    counts = dict.fromkeys(range(config.num_clients), 0)
    for r in range(config.rounds):
        for client in sample_clients(config, r)[0]:
            counts[int(client)] += 1
    return counts


def in_the_clear(threat: ThreatModel) -> list[str]:
    """What the threat model hands the server beside the update, which no DP noise covers."""
    granted = {"labels": threat.labels_known, "number of examples": threat.num_images_known,
               "BatchNorm statistics": threat.bn_stats_known}
    return [name for name, known in granted.items() if known]


def scored_test_images(wanted: int | None, available: int) -> int:
    """``wanted`` test images, or the first ``TEST_IMAGES`` (all, if fewer); more than the test
    split holds is refused rather than silently cut."""
    if wanted is None:
        return min(TEST_IMAGES, available)
    if wanted > available:
        raise GradinvError(f"test_images {wanted} is more than the {available} images of the test "
                           "split")
    return wanted


def aggregate(state: dict[str, torch.Tensor], updates: list[ClientUpdate], *,
              server_lr: float) -> dict[str, torch.Tensor]:
    """Example-weighted mean of the clients' updates applied to the parameters (FedSGD: a
    gradient step of ``server_lr``; FedAvg: the mean delta). Buffers (BatchNorm running
    statistics) keep their broadcast values: clients compute with frozen statistics and send
    no buffers, so the server has nothing to average."""
    total = sum(u.num_images for u in updates)
    new = dict(state)
    for name in updates[0].tensors:
        mean = sum(u.tensors[name] * (u.num_images / total) for u in updates)
        step = -server_lr * mean if updates[0].kind == "fedsgd" else mean
        new[name] = state[name] + step
    return new


def accuracy(model: nn.Module, test: PrivateBatch, *, mode: str, chunk: int = 500,
             device: torch.device | None = None) -> float:
    """Top-1 accuracy on ``test`` in the clients' mode (train mode normalises each chunk with
    its own batch statistics, since the running statistics are never updated), computed on
    ``device`` (default: where ``model`` is)."""
    net = FunctionalModel(model, mode, device).module  # type: ignore[arg-type]
    with torch.no_grad():
        correct = sum(int((net(x.to(device or x.device)).argmax(1).cpu() == y).sum())
                      for x, y in zip(test.images.split(chunk), test.labels.split(chunk)))
    return correct / len(test.labels)


def simulate(config: FederationConfig, record_dir: str | Path, *, progress: bool = True,
             log: Callable[[str], None] = print, on_update: UpdateHook | None = None,
             device: torch.device = torch.device("cpu")) -> Record:
    """Run the federation and record every observed update in ``record_dir``; a record of the
    same config there is resumed after its last complete round. The clients compute on
    ``device`` (``Federation``)."""
    if not isinstance(config, FederationConfig):
        raise GradinvError(f"config must be a FederationConfig, not {type(config).__name__}")
    check_writable(record_dir, name="record_dir")
    federation = Federation(config, device)
    meta = federation.record_meta()
    with RecordWriter(record_dir, meta) as writer:  # the record's lock ends with the run
        for line in meta.privacy_lines():
            log(f"privacy: {line}")
        if federation.short_shards():
            log(f"note: clients {', '.join(map(str, federation.short_shards()))} hold fewer "
                f"than {config.batch_size} images and use all of theirs each round")
        if writer.next_round:
            log(f"resuming {record_dir} after round {writer.next_round - 1}")

        def record(observation: Observation, batch: PrivateBatch) -> None:
            writer.add_update(observation, batch)
            if on_update is not None:
                on_update(observation, batch)

        federation.run(start_round=writer.next_round, state=writer.resume_state,
                       on_update=record, on_round=writer.complete_round, progress=progress,
                       log=log)
    return open_record(record_dir)
