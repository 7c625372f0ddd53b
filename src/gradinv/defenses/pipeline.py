"""Defenses composed in order: what the client applies, and what a knowing attacker replays."""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch

from ..checks import GradinvError
from ..types import DefenseSpec, GradientFn, Params, ThreatModel
from .base import (REGISTRY, ClientContext, Defense, LocalDefense, UpdateDefense, create,
                   parse_spec)

SpecLike = DefenseSpec | str | tuple[str, dict] | dict


def as_spec(item: SpecLike) -> DefenseSpec:
    """A ``DefenseSpec``, a ``"name:key=value"`` string, a ``(name, settings)`` pair, or the
    ``{"name": ..., "settings": ...}`` a run's config.json holds."""
    if isinstance(item, DefenseSpec):
        return item
    if isinstance(item, str):
        return parse_spec(item)
    if isinstance(item, dict) and "name" in item and set(item) <= {"name", "settings"}:
        item = (item["name"], item.get("settings", {}))
    if (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)
            and isinstance(item[1], dict)):
        return DefenseSpec(item[0], dict(item[1]))
    raise GradinvError(f"a defense is 'name:key=value,...', (name, settings) or a DefenseSpec, "
                       f"not {type(item).__name__}")


def over_federation(specs: Iterable[SpecLike], participations: int,
                    local_steps: int) -> list[DefenseSpec]:
    """The specs as given, each made to keep its promise over a client's whole federation
    (``Defense.over_federation``): up to ``participations`` updates of ``local_steps`` local
    steps each per client."""
    _check_list(specs)
    return [DefenseSpec(s.name, REGISTRY.get(s.name).over_federation(dict(s.settings),
                                                                     participations, local_steps))
            for s in map(as_spec, specs)]


def _check_list(specs: object) -> None:
    if isinstance(specs, (str, DefenseSpec)) or not isinstance(specs, Iterable):
        raise GradinvError(f"defenses must be a list of defenses, not {type(specs).__name__}")


def update_generator(seed: int, round: int, client_id: int, position: int,
                     run_seed: int = 0) -> torch.Generator:
    """A CPU generator per (defense seed, round, client, place in the pipeline, run seed):
    every update of a federation gets fresh noise, runs of different seeds (a sweep's seeds,
    federations of different seeds) get different noise, and the same settings give the same
    defended update. Run seed 0 draws what versions without it drew."""
    entropy = [seed, round, client_id, position] + ([run_seed] if run_seed else [])
    state = np.random.SeedSequence(entropy).generate_state(1, np.uint64)
    return torch.Generator().manual_seed(int(state[0]))


class DefensePipeline:
    """Defenses applied in order. A ``LocalDefense`` (DP-SGD) changes the local computation
    itself, so it can only come first, once; the update transforms follow in the given order."""

    def __init__(self, defenses: Sequence[Defense]) -> None:
        local = [i for i, d in enumerate(defenses) if isinstance(d, LocalDefense)]
        if local and local != [0]:
            raise GradinvError(f"defense {defenses[local[-1]].name} changes the client's local "
                               "computation: give it first, and only once")
        self.defenses = tuple(defenses)

    @classmethod
    def from_specs(cls, specs: Iterable[SpecLike]) -> DefensePipeline:
        _check_list(specs)
        return cls([create(s.name, **s.settings) for s in map(as_spec, specs)])

    @classmethod
    def for_client(cls, specs: Iterable[SpecLike], threat: ThreatModel) -> DefensePipeline:
        """The client's defenses (``from_specs``) under ``threat``, which may not say the
        server knows defenses when there are none (what would it replay?)."""
        pipeline = cls.from_specs(specs)
        if threat.defense_known and not pipeline.defenses:
            raise GradinvError("--defense-known says the server knows the client's defenses, "
                               "but there are none; add --defense or drop --defense-known")
        return pipeline

    @property
    def specs(self) -> tuple[DefenseSpec, ...]:
        """Every defense with its settings as it runs, defaults included."""
        return tuple(DefenseSpec(d.name, dict(d.settings)) for d in self.defenses)

    @property
    def derived(self) -> list[dict]:
        """Each defense's derived values (``Defense.derived``), by name, where it has any."""
        return [{"name": d.name, **d.derived} for d in self.defenses if d.derived]

    def privacy(self, participations: dict[int, int], local_steps: int) -> list[dict]:
        """Per defense that promises differential privacy: what its epsilon protects, its
        delta, the epsilon it was calibrated to (None: set by a noise multiplier) and the
        epsilon each client has spent after its ``participations`` (client -> updates sent)
        of ``local_steps`` local steps, by client."""
        return [{"name": d.name, "protects": d.protects, "delta": d.settings["delta"],
                 "calibrated_epsilon": d.settings.get("epsilon"),
                 "spent_epsilon": {str(c): d.spent_epsilon(k, local_steps)
                                   for c, k in participations.items()}}
                for d in self.defenses if d.protects is not None]

    @property
    def local(self) -> LocalDefense | None:
        first = self.defenses[0] if self.defenses else None
        return first if isinstance(first, LocalDefense) else None

    def _generator(self, position: int, round: int, client_id: int,
                   run_seed: int) -> torch.Generator | None:
        seed = self.defenses[position].seed
        return None if seed is None else update_generator(seed, round, client_id, position,
                                                          run_seed)

    def check_releases(self, releases: int) -> None:
        """The local defense's check that its promise covers ``releases`` uses of each example
        (FedSGD: 1; FedAvg: its local epochs)."""
        if self.local is not None:
            self.local.check_releases(releases)

    def client_gradient(self, client: ClientContext, *, round: int = 0, client_id: int = 0,
                        run_seed: int = 0) -> GradientFn | None:
        """The gradient the client's local steps use (None: the plain gradient)."""
        if self.local is None:
            return None
        return self.local.gradient(client, self._generator(0, round, client_id, run_seed))

    def apply(self, update: Params, client: ClientContext, *, round: int = 0,
              client_id: int = 0, run_seed: int = 0) -> Params:
        """The update transforms, in order, on the client's computed update."""
        for position, defense in enumerate(self.defenses):
            if isinstance(defense, UpdateDefense):
                update = defense.apply(update, client=client,
                                       generator=self._generator(position, round, client_id,
                                                                 run_seed))
        return update

    def attacker_gradient(self) -> GradientFn | None:
        """The local computation as a knowing attacker simulates it (None: the plain one)."""
        return None if self.local is None else self.local.attacker_gradient()

    def replay(self, simulated: Params, observed: Params) -> Params:
        """The update transforms, in order, as a knowing attacker replays them."""
        for defense in self.defenses:
            if isinstance(defense, UpdateDefense):
                simulated = defense.replay(simulated, observed)
        return simulated
