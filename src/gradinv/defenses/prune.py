"""Top-k magnitude pruning (gradient sparsification): "Deep Leakage from Gradients" (Zhu et al.,
NeurIPS 2019) proposed it as a defense; the GIAS code evaluates rates 0, .3, .5, .8, .9, .95,
.98 and prunes each tensor separately."""
from __future__ import annotations

import torch

from ..checks import GradinvError, check_choice, check_float
from ..types import Params
from .base import ClientContext, UpdateDefense, register

SCOPES = ("tensor", "global")


def keep_largest(values: torch.Tensor, rate: float) -> torch.Tensor:
    """``values`` with its ``round(rate * n)`` smallest-magnitude entries set to zero (ties
    broken by position), so exactly that share is zeroed."""
    flat = values.flatten()
    keep = flat.numel() - round(rate * flat.numel())
    mask = torch.zeros_like(flat, dtype=torch.bool)
    mask[flat.abs().topk(keep).indices] = True
    return (flat * mask).view_as(values)


def keep_observed_pattern(simulated: Params, observed: Params) -> Params:
    """The attacker's side of a pruning defense: the simulated update restricted to the entries
    the defense kept, i.e. the nonzero pattern of the observed update (with the cosine cost,
    the masked cosine of the GIAS code's ``sim_cmpr`` cost)."""
    return {k: t * (observed[k] != 0) for k, t in simulated.items()}


@register
class Prune(UpdateDefense):
    """Set the share ``rate`` of the update's entries with the smallest magnitude to zero:
    ``round(rate * n)`` entries of every tensor of n entries (``scope="tensor"``, as the GIAS
    code), or of all tensors together (``scope="global"``). A knowing attacker compares only
    the entries that were kept."""

    name = "prune"
    summary = "zero the share rate of smallest-magnitude entries (per tensor or global)"

    def __init__(self, *, rate: float = 0.95, scope: str = "tensor") -> None:
        check_float("rate", rate, low=0, high=1, where=self.name)
        if rate == 1:
            raise GradinvError(f"{self.name}: rate must be below 1 (1 would zero the whole "
                               "update), not 1")
        check_choice("scope", scope, SCOPES, where=self.name)
        self.rate, self.scope = rate, scope

    def apply(self, update: Params, *, generator: torch.Generator | None,
              client: ClientContext) -> Params:
        if self.scope == "tensor":
            return {k: keep_largest(t, self.rate) for k, t in update.items()}
        flat = keep_largest(torch.cat([t.flatten() for t in update.values()]), self.rate)
        parts = flat.split([t.numel() for t in update.values()])
        return {k: p.view_as(t) for (k, t), p in zip(update.items(), parts)}

    def replay(self, simulated: Params, observed: Params) -> Params:
        return keep_observed_pattern(simulated, observed)
