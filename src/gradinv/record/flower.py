"""Record a real Flower federation in gradinv's record format, so it can be audited.

``pip install 'gradinv[flower]'`` (Flower's message API, flwr >= 1.42). On the server, wrap the
strategy the federation already uses::

    from gradinv.record import ModelSpec
    from gradinv.record.flower import RecordingStrategy

    strategy = RecordingStrategy(FedAvg(fraction_evaluate=0.0), "records/flower",
                                 model=ModelSpec("lenet", 12, 1, 10, 16, "dlg-uniform"))
    strategy.start(grid=grid, initial_arrays=ArrayRecord(model.state_dict()), num_rounds=5)

A federation of the user's own ``nn.Module`` passes it (or its factory) as ``model``, with
``channels=``, ``num_classes=`` and ``image_size=``: the record then describes the model (the
names, shapes and dtypes of its state, and its import path as provenance) instead of naming a
gradinv architecture, and is attacked with ``gradinv audit RECORD --model-factory
package.module:factory`` (loading a record never imports code). Its ``torch.nn.BatchNorm2d``
layers are converted for the attacks (``gradinv.models.adapt_model``); layers that cannot be
are refused here, before the federation runs.

The wrapper delegates every decision to the wrapped strategy (sampling, aggregation,
evaluation) and records, for every round and client, the global arrays the server sent
(``configure_train``) and the arrays the client replied with (``aggregate_train``), plus the
metadata the client declared: number of examples, its local SGD recipe (learning rate, local
batch size, epochs) and its labels. What the ``threat`` model withholds is dropped before
anything is written, exactly as ``gradinv.fl.client.observe`` does in gradinv's own federation,
so the record is what an honest-but-curious server of that threat model sees.

Clients build their reply with ``client_reply`` (any ClientApp can also write the same keys
itself): the trained state under ``"arrays"``, ``num-examples`` in the ``"metrics"``
MetricRecord, and the declared metadata in the ``"gradinv"`` ConfigRecord (a ConfigRecord, not a
MetricRecord: FedAvg averages MetricRecords and fails on lists of unequal lengths). Flower node
ids are random per run, so a client sends its ``partition-id``, which becomes the record's
``client_id``. For auditing one's own federation, a client may also send its training batch
(``private=``, ArrayRecord ``"gradinv-private"``); the wrapper removes it from the reply before
the wrapped strategy sees it and keeps it under ``private/`` only when ``store_private`` is set.

What is recorded as the update (``update=``):

- ``"fedavg"`` (default): the FedAvg delta, client parameters minus the global parameters, with
  the client's declared local recipe. gradinv's FedAvg replays ``epochs`` passes of plain SGD
  over the batch in order, in steps of ``local_batch_size``; a client that trains otherwise
  (momentum, shuffling, weight decay) makes that replay inexact.
- ``"fedsgd"``: the gradient, ``(global - client) / lr``; only for clients that declare exactly
  one local SGD step (``epochs == 1`` and ``local_batch_size >= num_examples``). For such a step
  it reproduces the client's gradient to float rounding.

Only parameters are part of an update (as in gradinv's own federation); buffers such as
BatchNorm running statistics are recorded as part of each round's broadcast state. Flower's
rounds start at 1; the record's start at 0 (record round = Flower round - 1).
The wrapper's ``start`` is Flower's ``Strategy.start`` driving the wrapper's hooks; a strategy
that overrides ``start`` itself is not supported.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch import nn

try:
    import flwr
    from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
    from flwr.serverapp import Grid
    from flwr.serverapp.strategy import Strategy
except ImportError as err:  # pragma: no cover - CI installs the extra
    raise ImportError("gradinv.record.flower needs Flower (flwr >= 1.42): "
                      "pip install 'gradinv[flower]'") from err

from ..checks import MAX_SIZE, GradinvError, check_bool, check_choice, check_int, one_line
from ..files import LOCK_FILE, check_writable
from ..models import adapt_model
from ..types import FedAvgConfig, Observation, PrivateBatch, ThreatModel
from ..user_code import import_path, user_module
from .format import RecordMeta
from .model import ModelDescription, ModelInfo, ModelSpec, describe_module, first_difference
from .writer import RecordWriter

ARRAYS = "arrays"
METRICS = "metrics"
META = "gradinv"
PRIVATE = "gradinv-private"
NUM_EXAMPLES = "num-examples"


def client_reply(state: dict[str, torch.Tensor], num_examples: int, *,
                 partition_id: int | None = None, lr: float | None = None,
                 local_batch_size: int | None = None, epochs: int | None = None,
                 labels: torch.Tensor | list[int] | None = None,
                 private: PrivateBatch | None = None,
                 metrics: dict[str, float] | None = None) -> RecordDict:
    """The content of a ClientApp's train reply: the trained ``state`` and what the client
    declares (omitted keys are simply not declared). ``private`` (the training batch, for
    auditing one's own federation) travels to the server only to be split off there."""
    declared: dict = {}
    for key, value in (("partition-id", partition_id), ("lr", lr),
                       ("local-batch-size", local_batch_size), ("epochs", epochs)):
        if value is not None:
            declared[key] = value
    if labels is not None:
        declared["labels"] = [int(v) for v in (labels.tolist() if torch.is_tensor(labels)
                                               else labels)]
    content = RecordDict({
        ARRAYS: ArrayRecord({k: v.detach().cpu() for k, v in state.items()}),
        METRICS: MetricRecord({NUM_EXAMPLES: int(num_examples), **(metrics or {})}),
        META: ConfigRecord(declared),
    })
    if private is not None:
        content[PRIVATE] = ArrayRecord({"images": private.images.detach().cpu().contiguous(),
                                        "labels": private.labels.detach().cpu().contiguous()})
    return content


def check_architecture(model: ModelDescription, state: dict[str, torch.Tensor]) -> None:
    """The broadcast arrays must be the state dict of the recorded model."""
    problem = first_difference(model.shapes(), {k: tuple(v.shape) for k, v in state.items()},
                               "the broadcast arrays")
    if problem is not None:
        raise GradinvError(f"the federation's arrays do not match the recorded model "
                           f"{model.name} ({problem})")


def model_info(model: ModelSpec | nn.Module | Callable[[], nn.Module], *,
               channels: int | None, num_classes: int | None,
               image_size: int | None) -> ModelInfo:
    """What the record says about the clients' model: a ModelSpec as given, or a description
    of the user's own module (or of what its factory builds), which must take
    ``(N, channels, image_size, image_size)`` images to ``num_classes`` logits and have only
    layers gradinv can attack."""
    sizes = {"channels": channels, "num_classes": num_classes, "image_size": image_size}
    if isinstance(model, ModelSpec):
        given = [k for k, v in sizes.items() if v is not None]
        if given:
            raise GradinvError(f"{given[0]} is part of the ModelSpec; give it only with your "
                               "own model")
        return model
    if isinstance(model, str):  # an import path names code, which a record never holds
        raise GradinvError("model must be a ModelSpec, an nn.Module or a factory returning one, "
                           "not str")
    module = user_module(model, "model", "a ModelSpec, an nn.Module or a factory returning one")
    source = import_path(type(model) if isinstance(model, nn.Module) else model)
    for key, value in sizes.items():
        if value is None:
            raise GradinvError(f"give {key}= with your own model (the record needs the input "
                               "shape and classes)")
        check_int(key, value, low=1, high=MAX_SIZE)
    _probe(adapt_model(module), channels, num_classes, image_size)  # type: ignore[arg-type]
    return describe_module(module, name=type(module).__name__, source=source,
                           channels=channels, num_classes=num_classes,  # type: ignore[arg-type]
                           image_size=image_size)  # type: ignore[arg-type]


def _probe(module: nn.Module, channels: int, num_classes: int, image_size: int) -> None:
    """Two blank images through ``module`` (in eval mode) must give two rows of logits."""
    images = torch.zeros(2, channels, image_size, image_size)
    module.eval()
    try:
        with torch.no_grad():
            shape = tuple(module(images).shape)
    except Exception as err:  # noqa: BLE001  (user code can raise anything)
        raise GradinvError(f"the model fails on {tuple(images.shape)} images ({one_line(err)}); "
                           "check channels= and image_size=") from None
    if shape != (2, num_classes):
        raise GradinvError(f"the model maps {tuple(images.shape)} images to {shape}, not (2, "
                           f"{num_classes}) logits; check num_classes=")


class RecordingStrategy(Strategy):
    """Delegates to ``strategy`` and records every client's training reply in ``record_dir``
    (a new or empty folder). See the module docstring for what is recorded."""

    def __init__(self, strategy: Strategy, record_dir: str | Path, *,
                 model: ModelSpec | nn.Module | Callable[[], nn.Module],
                 channels: int | None = None, num_classes: int | None = None,
                 image_size: int | None = None, threat: ThreatModel | None = None,
                 update: str = "fedavg", data_channels: int | None = None,
                 store_private: bool = False, federation: dict | None = None) -> None:
        if not isinstance(strategy, Strategy):
            raise GradinvError(f"strategy must be a Flower message-API Strategy "
                               f"(flwr.serverapp.strategy), not {type(strategy).__name__}")
        info = model_info(model, channels=channels, num_classes=num_classes,
                          image_size=image_size)
        threat = ThreatModel(model_mode="train") if threat is None else threat
        if not isinstance(threat, ThreatModel):
            raise GradinvError(f"threat must be a ThreatModel, not {type(threat).__name__}")
        if threat.bn_stats_known:
            raise GradinvError("Flower clients send no BatchNorm statistics: use a threat model "
                               "with bn_stats_known=False")
        check_choice("update", update, ("fedavg", "fedsgd"))
        check_bool("store_private", store_private)
        if update == "fedsgd" and not threat.local_hparams_known:
            raise GradinvError("update='fedsgd' divides the delta by the declared learning rate: "
                               "it needs local_hparams_known=True")
        root = Path(record_dir)
        check_writable(root)
        if root.exists() and (not root.is_dir()
                              or any(p.name != LOCK_FILE for p in root.iterdir())):
            raise GradinvError(f"{root} is not an empty folder; a Flower run records into a "
                               "new or empty one")
        self.strategy, self.threat, self.update = strategy, threat, update
        self.model = info.describe()
        self._params = self.model.parameter_names()
        meta = RecordMeta(model=info, update=update, threat=threat,  # type: ignore[arg-type]
                          data_channels=data_channels or info.channels, private=store_private,
                          federation={"framework": "flower", "flwr": flwr.__version__,
                                      "strategy": type(strategy).__name__,
                                      **(federation or {})})
        self.writer = RecordWriter(root, meta)
        self.path = root
        self._broadcast: dict[int, dict[str, torch.Tensor]] = {}
        self._node_ids: dict[int, int] = {}  # Flower node id -> client id, when none is declared

    # -- delegation ---------------------------------------------------------------------------
    def __getattr__(self, name: str):
        return getattr(self.__dict__["strategy"], name)

    def summary(self) -> None:
        self.strategy.summary()

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]):
        return self.strategy.aggregate_evaluate(server_round, replies)

    # -- recording ----------------------------------------------------------------------------
    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        state = arrays.to_torch_state_dict()
        check_architecture(self.model, state)
        self._broadcast[server_round - 1] = state
        return self.strategy.configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        r = server_round - 1
        replies = list(replies)
        if r not in self._broadcast:
            raise GradinvError(f"round {server_round} was aggregated without being configured "
                               "through this wrapper")
        broadcast = self._broadcast.pop(r)
        observed = []
        for message in replies:
            if message.has_error() or not message.has_content():
                continue
            private = message.content.array_records.get(PRIVATE)
            if PRIVATE in message.content:
                del message.content[PRIVATE]  # never reaches the wrapped strategy
            observed.append(self._observe(message, r, broadcast, private))
        ids = [o.client_id for o, _ in observed]
        if len(set(ids)) != len(ids):
            raise GradinvError(f"two clients declared the same partition-id in round "
                               f"{server_round}: {sorted(ids)}")
        for observation, batch in sorted(observed, key=lambda pair: pair[0].client_id):
            self.writer.add_update(observation, batch)
        arrays, metrics = self.strategy.aggregate_train(server_round, replies)
        state = broadcast if arrays is None else arrays.to_torch_state_dict()
        self.writer.complete_round(r, state, test_accuracy=None)
        return arrays, metrics

    def _observe(self, message: Message, r: int, broadcast: dict[str, torch.Tensor],
                 private: ArrayRecord | None) -> tuple[Observation, PrivateBatch | None]:
        content = message.content
        node = int(message.metadata.src_node_id)
        arrays = [v for k, v in content.array_records.items() if k != PRIVATE]
        if len(arrays) != 1:
            raise GradinvError(f"node {node} replied with {len(arrays)} ArrayRecords; expected "
                               "one (its trained model)")
        client = arrays[0].to_torch_state_dict()
        missing = [k for k in self._params if k not in client]
        if missing:
            raise GradinvError(f"node {node}'s reply lacks the parameters {', '.join(missing[:3])}"
                               f" of the recorded model {self.model.name}")
        declared = dict(content.config_records[META]) if META in content.config_records else {}
        num_examples = next((int(m[NUM_EXAMPLES]) for m in content.metric_records.values()
                             if NUM_EXAMPLES in m), None)
        client_id = int(declared["partition-id"]) if "partition-id" in declared else \
            self._node_ids.setdefault(node, len(self._node_ids))
        who = f"client {client_id} (round {r + 1})"
        t = self.threat

        def need(key: str, why: str):
            if key not in declared:
                raise GradinvError(f"{who} did not declare {key!r}, which {why}")
            return declared[key]

        labels = None
        if t.labels_known:
            labels = torch.tensor(list(need("labels", "the threat model shares (labels_known)")),
                                  dtype=torch.long)
        if t.num_images_known and num_examples is None:
            raise GradinvError(f"{who} sent no {NUM_EXAMPLES!r} metric, which the threat model "
                               "shares (num_images_known)")
        delta = {k: client[k] - broadcast[k] for k in self._params}
        fedavg = None
        if self.update == "fedsgd" or t.local_hparams_known:
            recipe = FedAvgConfig(lr=float(need("lr", "the update needs")),
                                  local_batch_size=int(need("local-batch-size",
                                                            "the update needs")),
                                  epochs=int(need("epochs", "the update needs")))
            if self.update == "fedavg":
                fedavg = recipe
            else:
                n = num_examples if num_examples is not None else (
                    None if labels is None else len(labels))
                if recipe.epochs != 1 or n is None or recipe.local_batch_size < n:
                    raise GradinvError(f"{who} took more than one local step ({recipe}); record "
                                       "it with update='fedavg'")
                delta = {k: -v / recipe.lr for k, v in delta.items()}
        observation = Observation(
            kind=self.update,  # type: ignore[arg-type]
            tensors=delta, threat=t, labels=labels,
            num_images=num_examples if t.num_images_known else None, fedavg=fedavg,
            broadcast=broadcast, bn_stats=None, round=r, client_id=client_id)
        batch = None
        if self.writer.meta.private:
            if private is None:
                raise GradinvError(f"{who} sent no private batch, and the record keeps them "
                                   "(store_private=True): pass private= to client_reply")
            tensors = private.to_torch_state_dict()
            batch = PrivateBatch(tensors["images"], tensors["labels"])
        return observation, batch
