"""Typed values that travel between the stages of an audit.

The flow is: ``PrivateBatch`` (client only) -> client computes a ``ClientUpdate`` -> the server
receives an ``Observation`` (the update filtered by the ``ThreatModel``) -> an attack returns a
``Reconstruction``. Only the evaluation step ever sees both a ``PrivateBatch`` and a
``Reconstruction``: the attack functions accept an ``Observation`` and have no way to reach the
ground truth.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Literal, Protocol

import torch
from torch import nn

from .checks import MAX_RATE, GradinvError, check_bool, check_choice, check_float, check_int

__all__ = ["ClientUpdate", "DefenseSpec", "FEDAVG_RULES", "FedAvgConfig", "FunctionalState",
           "GradientFn", "GradinvError", "LossFn", "ModelMode", "Observation", "Params",
           "PrivateBatch", "Reconstruction", "ThreatModel", "UpdateKind", "resolve_fedavg"]

ModelMode = Literal["eval", "train"]
UpdateKind = Literal["fedsgd", "fedavg"]
# A model's parameters (or an update of them, or its buffers) by name.
Params = dict[str, torch.Tensor]
# (params, images, labels) -> the mean loss of a batch.
LossFn = Callable[[Params, torch.Tensor, torch.Tensor], torch.Tensor]
# (loss, params, images, labels) -> the gradient a local step uses: by default grad(loss); a
# client-side defense such as DP-SGD (gradinv.defenses.dpsgd) clips and noises it instead.
GradientFn = Callable[[LossFn, Params, torch.Tensor, torch.Tensor], Params]


class FunctionalState(Protocol):
    """A model with its weights as plain tensors (``gradinv.fl.functional.FunctionalModel``):
    what a client-side defense reads of the client's model."""

    module: nn.Module
    params: Params
    buffers: Params


@dataclass(frozen=True)
class ThreatModel:
    """What the honest-but-curious server knows besides the update itself.

    ``defense_known``: the server knows which defenses the client applied and their settings
    (not the client's random draws), so the attacks replay them (``attacks.base.Target``).
    """

    labels_known: bool = True
    num_images_known: bool = True
    bn_stats_known: bool = False
    local_hparams_known: bool = True
    model_mode: ModelMode = "eval"
    defense_known: bool = False

    def __post_init__(self) -> None:
        for name in ("labels_known", "num_images_known", "bn_stats_known", "local_hparams_known",
                     "defense_known"):
            check_bool(name, getattr(self, name))
        check_choice("model_mode", self.model_mode, ("eval", "train"))
        if self.labels_known and not self.num_images_known:
            raise GradinvError("the count is unknown (--unknown-count, num_images_known=False) "
                               "but the labels are known, one per image, which tells the count: "
                               "add --unknown-labels (labels_known=False) too")


@dataclass(frozen=True)
class FedAvgConfig:
    """The client's local training recipe for FedAvg (K = epochs * ceil(n / batch_size) steps)."""

    lr: float = 1e-2
    local_batch_size: int = 4
    epochs: int = 1

    def __post_init__(self) -> None:
        for name, rule in FEDAVG_RULES.items():
            rule(name, getattr(self, name), where="FedAvg")


# The rule for each FedAvgConfig field, by name: the command line checks its options with them
# too, under the option's own name.
FEDAVG_RULES: dict[str, Callable[..., None]] = {
    "lr": partial(check_float, low=0, low_open=True, high=MAX_RATE),
    "local_batch_size": partial(check_int, low=1),
    "epochs": partial(check_int, low=1),
}


def resolve_fedavg(update: object, fedavg: object, threat: ThreatModel) -> FedAvgConfig | None:
    """The client's local recipe for ``update``: ``fedavg`` or the default one for FedAvg, None
    for FedSGD. FedSGD has no local steps, so FedAvg settings, or a threat model withholding
    them, would be recorded as if they mattered: both are refused."""
    check_choice("update", update, ("fedsgd", "fedavg"))
    if fedavg is not None and not isinstance(fedavg, FedAvgConfig):
        raise GradinvError(f"fedavg must be a FedAvgConfig or None, not {type(fedavg).__name__}")
    if update == "fedavg":
        return fedavg or FedAvgConfig()
    if fedavg is not None:
        raise GradinvError("FedAvg settings (--local-lr, --local-batch-size, --local-epochs) "
                           "only apply to --update fedavg")
    if not threat.local_hparams_known:
        raise GradinvError("--unknown-hparams only applies to --update fedavg: FedSGD has no "
                           "local hyper-parameters to withhold")
    return None


@dataclass(frozen=True)
class PrivateBatch:
    """The client's private data: images in [0, 1] (N, C, H, W) at the model's input size."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if not isinstance(self.images, torch.Tensor) or not self.images.is_floating_point():
            raise GradinvError(f"images must be a float tensor (N, C, H, W), not "
                               f"{_describe(self.images)}")
        if (not isinstance(self.labels, torch.Tensor) or self.labels.is_floating_point()
                or self.labels.is_complex() or self.labels.dtype == torch.bool):
            raise GradinvError(f"labels must be an integer tensor (N,), not {_describe(self.labels)}")
        if self.images.ndim != 4 or self.labels.ndim != 1 or len(self.images) != len(self.labels):
            raise GradinvError(f"a batch needs images (N, C, H, W) and labels (N,) of equal length, "
                               f"not {tuple(self.images.shape)} and {tuple(self.labels.shape)}")


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor"
    return f"a {type(value).__name__}"


@dataclass(frozen=True)
class DefenseSpec:
    """A defense by registry name and settings: ``gradinv.defenses.create(name, **settings)``."""

    name: str
    settings: dict = field(default_factory=dict)

    def public(self) -> DefenseSpec:
        """What a server that knows the defense may know: the settings without the client's
        seed (knowing it would let the server regenerate and subtract the noise)."""
        return DefenseSpec(self.name, {k: v for k, v in self.settings.items() if k != "seed"})

    def __str__(self) -> str:
        """The command-line form, ``name:key=value,key=value``."""
        values = ",".join(f"{k}={v}" for k, v in self.settings.items())
        return f"{self.name}:{values}" if values else self.name


@dataclass(frozen=True)
class ClientUpdate:
    """Everything the client sends or leaks, before the threat model filters it.

    ``broadcast`` is the model state (parameters and buffers, by name) the server sent for this
    round: the client computed its update from it, and the server knows it.
    """

    kind: UpdateKind
    tensors: dict[str, torch.Tensor]
    labels: torch.Tensor
    num_images: int
    broadcast: dict[str, torch.Tensor]
    fedavg: FedAvgConfig | None = None
    bn_stats: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None
    round: int = 0
    client_id: int = 0
    defenses: tuple[DefenseSpec, ...] = ()


@dataclass(frozen=True)
class Observation:
    """What the attacker is allowed to use: the update plus the metadata the threat model grants.

    ``tensors`` are per-parameter gradients (FedSGD) or weight differences (FedAvg), keyed by
    parameter name. ``broadcast`` is the model state the server sent that round (an update from
    round 50 is attacked against round 50's weights); ``round`` and ``client_id`` say where in
    the federation it was observed. ``defenses`` are the client's defenses (without its seeds)
    when the threat model says the server knows them. Fields the threat model withholds are
    ``None``.
    """

    kind: UpdateKind
    tensors: dict[str, torch.Tensor]
    threat: ThreatModel
    labels: torch.Tensor | None
    num_images: int | None
    fedavg: FedAvgConfig | None
    broadcast: dict[str, torch.Tensor]
    bn_stats: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None
    round: int = 0
    client_id: int = 0
    defenses: tuple[DefenseSpec, ...] | None = None


@dataclass(frozen=True)
class Reconstruction:
    """An attack's output: the winning restart's images and labels, and how it got there."""

    images: torch.Tensor
    labels: torch.Tensor
    matching_cost: float
    restart_costs: list[float]
    loss_history: list[float]
    attack: str
    extras: dict[str, object] = field(default_factory=dict)
