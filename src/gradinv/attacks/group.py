"""Several observed updates attacked in one batched pass: the clients of one round.

The clients of a round share the weights the server broadcast, so their simulated updates run
through the same model: an attack can optimise candidates for every client and every restart
as rows of one vmapped step (clients x restarts) instead of one update after the other. Each
row carries its client's observed update and labels as per-row inputs (``inputs``); the
matching cost reads them there. Only updates that would be matched the same way are grouped
(``stackable_groups``): the same broadcast weights, model mode, number of images, FedAvg
settings, known defenses and matched layers, and no BatchNorm statistics (those are per
client and enter the prior through hooks, not per-row inputs).

Row ``c * R + r`` is client c's restart r, started exactly as restart r of that client alone
(from the attack's seed, or the client's own where a caller gives one per client: GIML),
so a group gives each client the reconstruction it would get alone, up to the rounding of a
larger batch.
"""
from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..checks import GradinvError
from ..types import Params, Reconstruction
from .base import Attack, Target, pick_winner
from .objectives import COSTS, top_k_layers

Inputs = dict[str, torch.Tensor]
OBSERVED = "observed:"  # prefix of the per-row observed tensors among the inputs


def _same_tensors(a: Params, b: Params) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _matched_like(a: Target, b: Target, top_k: int | None) -> bool:
    """Whether ``b``'s update is simulated and compared the way ``a``'s is."""
    return (a.bn_stats is None and b.bn_stats is None and a.num_images == b.num_images
            and a.model.module.training == b.model.module.training
            and a.fedavg == b.fedavg and (a.labels is None) == (b.labels is None)
            and repr(a.defenses and a.defenses.specs) == repr(b.defenses and b.defenses.specs)
            and top_k_layers(a.observed, top_k) == top_k_layers(b.observed, top_k)
            and _same_tensors(a.model.params, b.model.params)
            and _same_tensors(a.model.buffers, b.model.buffers))


@dataclass
class TargetGroup:
    """Targets matched in one pass (see the module docstring); one target is the plain case."""

    targets: list[Target]
    top_k: int | None = None

    def __post_init__(self) -> None:
        if not self.targets:
            raise GradinvError("a group of targets needs at least one target")
        first = self.targets[0]
        if not all(_matched_like(first, t, self.top_k) for t in self.targets[1:]):
            raise GradinvError("these updates cannot be attacked in one pass (other weights, "
                               "batch sizes, settings or BatchNorm statistics)")

    @property
    def first(self) -> Target:
        return self.targets[0]

    @property
    def num_images(self) -> int:
        return self.first.num_images

    def matching_cost(self, cost: str) -> Callable[[torch.Tensor, Inputs], torch.Tensor]:
        """(images, a row's inputs) -> the distance of their simulated update from the row's
        observed one. One target keeps its update and labels as constants (no inputs)."""
        if len(self.targets) == 1:
            match, labels = self.first.matching_cost(cost, self.top_k), self.first.labels
            return lambda images, _inputs: match(images, labels)
        names, distance = top_k_layers(self.first.observed, self.top_k), COSTS[cost]

        def match_row(images: torch.Tensor, inputs: Inputs) -> torch.Tensor:
            observed = {k[len(OBSERVED):]: v for k, v in inputs.items() if k.startswith(OBSERVED)}
            simulated = self.first.simulate(images, inputs["labels"], observed)
            return distance(simulated, observed, names)
        return match_row

    def bn_prior(self, images: torch.Tensor, weight: float) -> torch.Tensor | float:
        """The BatchNorm prior of a single target (a group has no statistics)."""
        return self.first.bn_prior(images, weight)

    def inputs(self, restarts: int) -> Inputs:
        """Per row (client-major: client c's restarts are rows c*R..c*R+R-1): the client's
        labels and observed tensors; nothing for one target."""
        if len(self.targets) == 1:
            return {}
        rows: Inputs = {"labels": self._per_row([t.labels for t in self.targets], restarts)}
        for name in self.first.observed:
            rows[OBSERVED + name] = self._per_row([t.observed[name] for t in self.targets],
                                                  restarts)
        return rows

    @staticmethod
    def _per_row(values: Sequence[torch.Tensor], restarts: int) -> torch.Tensor:
        return torch.stack(list(values)).repeat_interleave(restarts, dim=0)

    def rows(self, client: int, restarts: int) -> slice:
        """The rows of client ``client`` (index in the group) at ``restarts`` per client."""
        return slice(client * restarts, (client + 1) * restarts)

    def starts(self, start: Callable[[int, int], torch.Tensor], restarts: int) -> torch.Tensor:
        """Every row's start: restart r of client c starts at ``start(c, r)``, as it would
        alone."""
        return torch.stack([start(c, r) for c in range(len(self.targets))
                            for r in range(restarts)])

    def winners(self, images: torch.Tensor, costs: torch.Tensor, row_history: torch.Tensor,
                attack: str, per_client: Callable[[slice], dict] | None = None,
                **extras: object) -> list[Reconstruction]:
        """Each client's best restart (``pick_winner`` over its rows); ``row_history`` is
        [iterations, rows]; ``per_client(rows)``: extras of the client of those rows."""
        restarts = len(costs) // len(self.targets)
        if len(self.targets) > 1:
            extras = {**extras, "batched_updates": len(self.targets)}
        found = []
        for c, target in enumerate(self.targets):
            rows = self.rows(c, restarts)
            history = row_history[:, rows].amin(1).tolist()
            own = per_client(rows) if per_client else {}
            found.append(pick_winner(target, images[rows], costs[rows], history, attack,
                                     **extras, **own))
        return found


def stackable_groups(targets: Sequence[Target], top_k: int | None = None
                     ) -> list[list[int]]:
    """The targets' indices in groups that can be matched in one pass, in order of first
    appearance (every target lands in the first group it fits)."""
    groups: list[list[int]] = []
    for i, target in enumerate(targets):
        home = next((g for g in groups if _matched_like(targets[g[0]], target, top_k)), None)
        if home is None:
            groups.append([i])
        else:
            home.append(i)
    return groups


def invert_in_groups(invert_group: Callable[..., list[Reconstruction]],
                     targets: Sequence[Target], top_k: int | None, **search: object
                     ) -> list[Reconstruction]:
    """``invert_group`` over the ``stackable_groups`` of ``targets``; reconstructions in the
    targets' order."""
    found: dict[int, Reconstruction] = {}
    for indices in stackable_groups(targets, top_k):
        group = TargetGroup([targets[i] for i in indices], top_k)
        found |= dict(zip(indices, invert_group(group, **search)))
    return [found[i] for i in range(len(targets))]


class GroupedAttack(Attack):
    """An attack whose search runs on a ``TargetGroup``: one update is a group of one, and the
    updates of a round that can share a pass (``stackable_groups``) share one."""

    top_k: int | None

    def invert(self, target: Target, *, image_shape: tuple[int, int, int], seed: int,
               device: torch.device, progress: bool) -> Reconstruction:
        return self.invert_group(TargetGroup([target], self.top_k), image_shape=image_shape,
                                 seed=seed, device=device, progress=progress)[0]

    def invert_many(self, targets: Sequence[Target], *, image_shape: tuple[int, int, int],
                    seed: int, device: torch.device, progress: bool) -> list[Reconstruction]:
        return invert_in_groups(self.invert_group, targets, self.top_k, image_shape=image_shape,
                                seed=seed, device=device, progress=progress)

    @abstractmethod
    def invert_group(self, group: TargetGroup, *, image_shape: tuple[int, int, int], seed: int,
                     device: torch.device, progress: bool) -> list[Reconstruction]:
        """The attack's search for every update of ``group`` (rows client-major)."""
