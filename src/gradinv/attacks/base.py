"""What every attack shares: the attack interface, the registry, and the simulated client."""
from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import partial
from typing import ClassVar

import torch
from torch import nn

from ..checks import MAX_RATE, GradinvError, check_bool, check_choice, check_float, check_int
from ..defenses.pipeline import DefensePipeline
from ..execution import COMPILE_CHOICES, fp32_precision
from ..fl.functional import FunctionalModel
from ..models.layers import BatchNorm2d
from ..registry import Registry
from ..types import FedAvgConfig, Observation, Params, Reconstruction
from .labels import AUTO, estimate_num_images, infer_labels, method_choices
from .objectives import COSTS, BNInputs, BNStats, bn_statistics_distance, top_k_layers


@dataclass
class Target:
    """The attacker's view of one observed update, ready to be matched against candidates.

    ``simulate(images, labels)`` recomputes the client's update for candidate images exactly the
    way the client did (FedSGD gradient, or the unrolled FedAvg local steps), differentiably.
    When the threat model says the server knows the client's ``defenses``, the simulated client
    applies them too, as far as they can be replayed: DP-SGD's per-example clipping (not its
    noise), clipping, quantisation (straight-through), and for pruning defenses only the
    entries the observed update kept are compared. Every attack matches through here.
    """

    model: FunctionalModel
    observed: Params
    num_images: int
    labels: torch.Tensor | None
    labels_inferred: bool
    fedavg: FedAvgConfig | None
    label_method: str | None = None  # the method that inferred the labels (None: not inferred)
    bn_stats: BNStats | None = None
    defenses: DefensePipeline | None = None

    def __post_init__(self) -> None:
        # The BN prior's hooks, registered once when the target is built (see ``BNInputs``).
        self.bn_inputs = BNInputs(self.model.module, list(self.bn_stats)) if self.bn_stats else None

    def simulate(self, images: torch.Tensor, labels: torch.Tensor,
                 observed: Params | None = None) -> Params:
        """``observed``: the update the replayed defenses compare with (default this
        target's; a batched group passes each row's, ``attacks.group``)."""
        gradient = None if self.defenses is None else self.defenses.attacker_gradient()
        if self.fedavg is None:
            update = self.model.fedsgd_update(images, labels, gradient)
        else:
            update = self.model.fedavg_update(images, labels, self.fedavg, gradient)
        if self.defenses is None:
            return update
        return self.defenses.replay(update, self.observed if observed is None else observed)

    def matching_cost(self, cost: str, top_k: int | None
                      ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """(images, labels) -> distance between their simulated update and the observed one."""
        names = top_k_layers(self.observed, top_k)
        distance = COSTS[cost]
        return lambda images, labels: distance(self.simulate(images, labels), self.observed, names)

    def bn_prior(self, images: torch.Tensor, weight: float) -> torch.Tensor | float:
        """``weight`` times the distance between the candidates' BatchNorm input statistics and
        the client's (``bn_statistics_distance``); 0 when the threat model withholds them, so
        an attack without them computes exactly what it did before."""
        if not self.bn_stats or not weight:
            return 0.0
        state = (self.model.params, self.model.buffers)
        return weight * bn_statistics_distance(self.bn_inputs, state, images, self.bn_stats)


def prepare_target(
    model: nn.Module,
    observation: Observation,
    *,
    image_shape: tuple[int, int, int],
    device: torch.device,
    infer_missing_labels: bool = True,
    num_images: int | None = None,
    label_method: str = AUTO,
) -> Target:
    """Build the attacker's simulator from the model's architecture, the weights broadcast in
    the observed round, and *only* what was observed (``model``'s own weights are not used).
    Labels the threat model withholds are inferred by ``label_method`` (``attacks.labels``)."""
    missing = [n for n, _ in model.named_parameters() if n not in observation.tensors]
    if missing:
        raise GradinvError(f"the observed update does not match the model (missing {missing[0]!r})")
    fmodel = FunctionalModel(model, observation.threat.model_mode, device,
                             state=observation.broadcast)
    check_input_shape(fmodel.module, image_shape, device)
    n = num_images or observation.num_images or estimate_num_images(model, observation)
    labels, method = observation.labels, None
    if labels is None and infer_missing_labels:
        inferred = infer_labels(model, observation, n, image_shape=image_shape,
                                method=label_method)
        labels, method = inferred.labels, inferred.method
    fedavg = observation.fedavg
    if observation.kind == "fedavg" and fedavg is None:
        # Hyper-parameters withheld: assume one full-batch step; the cosine cost ignores the lr.
        fedavg = FedAvgConfig(lr=1.0, local_batch_size=n, epochs=1)
    return Target(
        model=fmodel,
        observed={k: v.to(device) for k, v in observation.tensors.items()},
        num_images=n,
        labels=None if labels is None else labels.to(device),
        labels_inferred=method is not None,
        label_method=method,
        fedavg=fedavg if observation.kind == "fedavg" else None,
        bn_stats=_bn_stats_for(fmodel.module, observation, device),
        defenses=(DefensePipeline.from_specs(observation.defenses) if observation.defenses
                  else None),
    )


def _bn_stats_for(model: nn.Module, observation: Observation, device: torch.device
                  ) -> BNStats | None:
    """The observed BatchNorm statistics on ``device``, checked against the model's layers."""
    if observation.bn_stats is None:
        return None
    layers = {n: m for n, m in model.named_modules() if isinstance(m, BatchNorm2d)}
    for name, stats in observation.bn_stats.items():
        fits = (name in layers and len(stats) == 2
                and all(s.shape == (layers[name].num_features,) for s in stats))
        if not fits:
            raise GradinvError(f"the observed BatchNorm statistics of layer {name!r} do not match "
                               "the model")
    return {n: (mean.to(device), var.to(device)) for n, (mean, var) in observation.bn_stats.items()}


# The rule for every attack hyper-parameter, by name: a constructor hands over its arguments and
# each one with a rule is checked, so the same setting is validated the same way everywhere.
HYPERPARAMETER_RULES: dict[str, Callable[..., None]] = {
    "iterations": partial(check_int, low=1),
    "latent_iterations": partial(check_int, low=1, optional=True),
    "restarts": partial(check_int, low=1),
    "lr": partial(check_float, low=0, low_open=True, high=MAX_RATE),
    "latent_lr": partial(check_float, low=0, low_open=True, high=MAX_RATE),
    "tv": partial(check_float, low=0, high=MAX_RATE),
    "latent_tv": partial(check_float, low=0, high=MAX_RATE),
    "latent_norm": partial(check_float, low=0, high=MAX_RATE),
    "distance": partial(check_float, low=0, high=MAX_RATE),
    "bn_stats": partial(check_float, low=0, high=MAX_RATE),
    "top_k": partial(check_int, low=1, optional=True),
    "cost": partial(check_choice, choices=tuple(COSTS)),
    "signed": check_bool,
    "latent_signed": check_bool,
    "batched": check_bool,
    "compile": partial(check_choice, choices=COMPILE_CHOICES),
    "label_method": partial(check_choice, choices=method_choices()),
}


def check_hyperparameters(attack: str, arguments: dict[str, object]) -> None:
    """Validate an attack's constructor ``arguments`` (its ``locals()``): type, finiteness and
    range of every number, switches that are bools, known cost names; the error names the
    attack and the parameter."""
    for name, value in arguments.items():
        rule = HYPERPARAMETER_RULES.get(name)
        if rule is not None:
            rule(name, value, where=attack)


def pick_winner(target: Target, images: torch.Tensor, costs: torch.Tensor, history: list[float],
                attack: str, **extras: object) -> Reconstruction:
    """The restart with the lowest matching cost (priors do not count) wins."""
    costs = costs.nan_to_num(nan=float("inf"))
    best = int(costs.argmin())
    return Reconstruction(
        images=images[best].detach().cpu(),
        labels=target.labels.cpu(),
        matching_cost=float(costs[best]),
        restart_costs=[float(c) for c in costs],
        loss_history=history,
        attack=attack,
        extras={"labels_inferred": target.labels_inferred, "label_method": target.label_method,
                "winner": best, **extras},
    )


def check_input_shape(model: nn.Module, image_shape: tuple[int, int, int],
                      device: torch.device) -> None:
    """Fail with one clear line, not a deep torch error, when the model rejects the image shape."""
    try:
        with torch.no_grad():
            model(torch.zeros(2, *image_shape, device=device))
    except RuntimeError:
        raise GradinvError(f"the model does not accept images of shape {tuple(image_shape)} "
                           "(channels, height, width); check --image-size and --channels") from None


class Attack(ABC):
    """One paper, one class. Construct with flat keyword hyper-parameters, then ``reconstruct``.

    ``reconstruct`` holds what every attack does first (the device, and the attacker's
    simulated client in the observed round's weights and the model's mode: ``prepare_target``);
    each attack writes only its search, ``invert``."""

    name: ClassVar[str]
    summary: ClassVar[str]
    # Whether missing labels are inferred from the last layer before the search (DLG instead
    # learns soft labels with the images), and by which method (the ``label_method``
    # hyper-parameter of the attacks that infer them).
    infers_labels: ClassVar[bool] = True
    label_method: str = AUTO
    settings: dict  # every constructor setting as it runs (set by ``create``)

    def reconstruct(
        self,
        model: nn.Module,
        observation: Observation,
        *,
        image_shape: tuple[int, int, int],
        seed: int = 0,
        device: str | torch.device = "cpu",
        progress: bool = True,
    ) -> Reconstruction:
        """Recover the client's images from ``observation`` (never from the ground truth)."""
        return self.reconstruct_many(model, [observation], image_shape=image_shape, seed=seed,
                                     device=device, progress=progress)[0]

    def reconstruct_many(
        self,
        model: nn.Module,
        observations: Sequence[Observation],
        *,
        image_shape: tuple[int, int, int],
        seed: int = 0,
        device: str | torch.device = "cpu",
        progress: bool = True,
    ) -> list[Reconstruction]:
        """``reconstruct`` for several updates (e.g. the clients of one round), each with
        ``seed``: attacks that can batch updates (``invert_many``) match them in one pass."""
        device = torch.device(device)
        with fp32_precision():  # labels, search and final rendering alike (no TF32 on a GPU)
            targets = [prepare_target(model, o, image_shape=image_shape, device=device,
                                      infer_missing_labels=self.infers_labels,
                                      label_method=self.label_method) for o in observations]
            return self.invert_many(targets, image_shape=image_shape, seed=seed, device=device,
                                    progress=progress)

    @abstractmethod
    def invert(self, target: Target, *, image_shape: tuple[int, int, int], seed: int,
               device: torch.device, progress: bool) -> Reconstruction:
        """The attack's search: images whose simulated update matches ``target``'s."""

    def invert_many(self, targets: Sequence[Target], *, image_shape: tuple[int, int, int],
                    seed: int, device: torch.device, progress: bool) -> list[Reconstruction]:
        """``invert`` for every target; one after the other unless the attack batches them."""
        return [self.invert(t, image_shape=image_shape, seed=seed, device=device,
                            progress=progress) for t in targets]


REGISTRY: Registry[type[Attack]] = Registry("attack")
register = REGISTRY.register
available = REGISTRY.available


def accepted_hyperparameters(name: str) -> set[str]:
    """The keyword hyper-parameters an attack's constructor takes."""
    return set(inspect.signature(REGISTRY.get(name).__init__).parameters) - {"self"}


def effective_settings(name: str, **hyperparameters: object) -> dict:
    """Every constructor setting of the attack as it will run, defaults included, so a run
    folder says what was used (a prior object is named, not dumped)."""
    bound = inspect.signature(REGISTRY.get(name).__init__).bind_partial(None, **hyperparameters)
    bound.apply_defaults()
    settings = dict(bound.arguments)
    settings.pop("self")
    return {k: getattr(v, "name", v) if k == "prior" else v for k, v in settings.items()}


def create(name: str, **hyperparameters: object) -> Attack:
    cls = REGISTRY.get(name)
    try:
        attack = cls(**hyperparameters)
    except TypeError as err:
        raise GradinvError(f"bad hyper-parameter for {name}: {err}") from None
    attack.settings = effective_settings(name, **hyperparameters)
    return attack


def restart_generator(seed: int, restart: int) -> torch.Generator:
    """A CPU generator per (seed, restart): restart r starts the same whether run alone or batched."""
    return torch.Generator().manual_seed(seed * 100_003 + restart)
