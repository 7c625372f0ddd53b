"""What every defense shares: the two kinds of defense, the registry, and the spec syntax.

A defense sits between the client and what the server observes. Most are pure transforms of
the client's named update tensors (``UpdateDefense``: clipping, noise, pruning, quantisation,
Soteria); DP-SGD changes the client's local computation itself (``LocalDefense``: it supplies
the gradient every local step uses). Each validates its settings in its constructor, naming the
bad one. When the threat model says the server knows the defenses, the attacks replay them
(``replay`` / ``attacker_gradient``, used by ``gradinv.attacks.base.Target``).
"""
from __future__ import annotations

import ast
import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch

from ..checks import GradinvError
from ..registry import Registry
from ..types import DefenseSpec, FunctionalState, GradientFn, Params


@dataclass(frozen=True)
class ClientContext:
    """What a client-side defense may read besides the update: the client's own model (the
    round's broadcast weights, in the client's mode) and its private batch."""

    model: FunctionalState
    images: torch.Tensor
    labels: torch.Tensor


class Defense(ABC):
    """One defense family, flat keyword settings with the literature's values as defaults."""

    name: ClassVar[str]
    summary: ClassVar[str]
    settings: dict  # every constructor setting as it runs (set by ``create``)
    seed: int | None = None  # random defenses draw from a generator seeded with it

    protects: ClassVar[str | None] = None  # what a DP defense's epsilon is about; None: no DP

    @property
    def derived(self) -> dict:
        """Values the defense computes from its settings and a reader of the run needs (the
        noise multiplier calibrated to an epsilon); none by default."""
        return {}

    @classmethod
    def over_federation(cls, settings: dict, participations: int, local_steps: int) -> dict:
        """The settings as given, made to keep the defense's promise over a client's whole
        federation (``participations`` updates of ``local_steps`` local steps each): a DP
        defense calibrated for one update would promise its epsilon while spending it each
        round. Unchanged by default."""
        return settings

    def spent_epsilon(self, participations: int, local_steps: int) -> float | None:
        """The epsilon (at the defense's delta) a client has spent after ``participations``
        updates of ``local_steps`` local steps each; None for a defense that promises none."""
        return None


class UpdateDefense(Defense):
    """A transform of the client's update tensors (dict name -> tensor) before it is sent."""

    @abstractmethod
    def apply(self, update: Params, *, generator: torch.Generator | None,
              client: ClientContext) -> Params:
        """The defended update; ``update`` is left untouched. ``generator`` is given to random
        defenses (a fresh one per client update)."""

    def replay(self, simulated: Params, observed: Params) -> Params:
        """What an attacker who knows this defense does to its simulated update before
        matching it to ``observed``; differentiable and vmappable. Nothing by default (noise:
        there is nothing to replay)."""
        return simulated


class LocalDefense(Defense):
    """A change of the client's local computation: the gradient each local step uses."""

    @abstractmethod
    def gradient(self, client: ClientContext, generator: torch.Generator | None) -> GradientFn:
        """The client's gradient function (see ``gradinv.types.GradientFn``)."""

    @abstractmethod
    def attacker_gradient(self) -> GradientFn:
        """The same computation without the client's randomness, for the attacker's simulated
        client; differentiable and vmappable."""

    def check_releases(self, releases: int) -> None:
        """Refuse a client whose local recipe uses each example in ``releases`` local steps,
        when the defense's promise does not cover that many (nothing to check by default)."""


REGISTRY: Registry[type[Defense]] = Registry("defense")
register = REGISTRY.register
available = REGISTRY.available


def create(name: str, **settings: object) -> Defense:
    """The defense ``name`` with ``settings``; its ``settings`` attribute then holds every
    setting as it runs, defaults included."""
    cls = REGISTRY.get(name)
    signature = inspect.signature(cls.__init__)
    known = [k for k in signature.parameters if k != "self"]
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise GradinvError(f"defense {name} takes no setting {unknown[0]!r}; it takes "
                           f"{', '.join(known)}")
    try:
        bound = signature.bind(None, **settings)
    except TypeError as err:
        raise GradinvError(f"bad setting for defense {name}: {err}") from None
    defense = cls(**settings)
    bound.apply_defaults()
    defense.settings = {k: v for k, v in bound.arguments.items() if k != "self"}
    return defense


def settings_help(name: str) -> str:
    """The settings ``name`` takes with their defaults (``epsilon`` when it has none), for
    ``gradinv list``: a bare ``--defense noise`` runs with sigma=0.01, which users must see."""
    parameters = inspect.signature(REGISTRY.get(name).__init__).parameters.values()
    return ", ".join(p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default}"
                     for p in parameters if p.name != "self")


def parse_spec(text: str) -> DefenseSpec:
    """``name`` or ``name:key=value,key=value`` (values read as Python literals, else as
    strings), e.g. ``prune:rate=0.9`` or ``quantize:mode=uniform,bits=4``."""
    name, _, rest = text.strip().partition(":")
    pairs = [p.partition("=") for p in rest.split(",")] if rest.strip() else []
    if not name or any(not key.strip() or not sep for key, sep, _ in pairs):
        raise GradinvError(f"bad defense {text!r}; expected NAME or NAME:key=value,key=value")
    keys = [key.strip() for key, _, _ in pairs]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise GradinvError(f"bad defense {text!r}: {repeated[0]} is given twice")
    return DefenseSpec(name.strip(), {key.strip(): _literal(value.strip())
                                      for key, _, value in pairs})


def _literal(value: str) -> object:
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value
