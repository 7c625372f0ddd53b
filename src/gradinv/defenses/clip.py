"""Norm clipping of the whole update (the first half of DP-FedAvg, McMahan et al., ICLR 2018;
clipping norm 4 in the GGL and GIFD defense grids)."""
from __future__ import annotations

import torch

from ..checks import check_float
from ..types import Params
from .base import ClientContext, UpdateDefense, register


def clip_to_norm(update: Params, max_norm: float) -> Params:
    """``update`` scaled so that its L2 norm over all tensors is at most ``max_norm`` (left as
    it is when already within); differentiable, so an attacker can replay it."""
    norm = torch.sqrt(sum(t.pow(2).sum() for t in update.values()))
    scale = max_norm / torch.clamp(norm, min=max_norm)
    return {k: t * scale for k, t in update.items()}


@register
class Clip(UpdateDefense):
    """Scale the update down to L2 norm ``max_norm`` (all tensors together) when it is larger.

    Knowing it, the attacker clips its simulated update the same way; the cosine cost does not
    change under a global scale, the L2 cost (DLG) does.
    """

    name = "clip"
    summary = "scale the whole update down to L2 norm max_norm (DP-FedAvg's clipping)"

    def __init__(self, *, max_norm: float = 4.0) -> None:
        check_float("max_norm", max_norm, low=0, low_open=True, where=self.name)
        self.max_norm = max_norm

    def apply(self, update: Params, *, generator: torch.Generator | None,
              client: ClientContext) -> Params:
        return clip_to_norm(update, self.max_norm)

    def replay(self, simulated: Params, observed: Params) -> Params:
        return clip_to_norm(simulated, self.max_norm)
