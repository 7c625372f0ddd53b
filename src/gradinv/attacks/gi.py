"""GI: "Inverting Gradients - How easy is it to break privacy in federated learning?"
(Geiping, Bauermeister, Droege, Moeller; NeurIPS 2020).

Optimise the pixels of R random images so that the update they would produce matches the
observed one in cosine distance, with a total-variation prior, signed Adam and clamping to
[0, 1]. Start images: ``init="grey"`` (default) draws 0.5 + 0.25 N(0, 1), i.e. noise around
mid-grey inside the valid range; ``init="noise"`` is the official code's N(0, 1) in pixel space
(clamped after the first step, so about half of the pixels start black). On the quality
benchmark both end at the same PSNR (22.2 dB at 2,000 iterations, benchmarks/RESULTS.md).
Needs: the model, the update, the number of images (or it is estimated) and the labels (or they
are inferred from the last layer). Works on FedSGD gradients and FedAvg deltas (the
local steps are unrolled differentiably). When the threat model grants the client's BatchNorm
statistics, ``bn_stats`` weighs the BN prior of Yin et al. (CVPR 2021, ``Target.bn_prior``).
"""
from __future__ import annotations

import torch

from ..checks import check_choice
from ..optim import optimise_restarts
from ..types import Reconstruction
from .base import check_hyperparameters, register, restart_generator
from .group import GroupedAttack, TargetGroup
from .labels import AUTO
from .objectives import total_variation

# Start images from standard normal noise, per initialisation scheme.
INITS = {
    "grey": lambda noise: (0.5 + 0.25 * noise).clamp(0, 1),
    "noise": lambda noise: noise,
}


@register
class GI(GroupedAttack):
    name = "gi"
    summary = "Geiping et al. 2020: pixels, cosine cost, TV prior, signed Adam, batched restarts"

    def __init__(self, *, iterations: int = 4800, lr: float = 0.1, restarts: int = 4,
                 tv: float = 1e-4, bn_stats: float = 1e-2, cost: str = "cosine",
                 top_k: int | None = None, signed: bool = True, init: str = "grey",
                 batched: bool = True, compile: str = "auto", label_method: str = AUTO) -> None:
        check_hyperparameters(self.name, locals())
        self.label_method = label_method
        check_choice("init", init, INITS, where=self.name)
        self.init = init
        self.iterations, self.lr, self.restarts, self.tv = iterations, lr, restarts, tv
        self.bn_stats = bn_stats
        self.cost, self.top_k, self.signed, self.batched = cost, top_k, signed, batched
        self.compile = compile

    def invert_group(self, group: TargetGroup, *, image_shape: tuple[int, int, int], seed: int,
                     device: torch.device, progress: bool) -> list[Reconstruction]:
        """Every client of ``group`` x ``restarts`` rows in one optimisation loop."""
        match = group.matching_cost(self.cost)

        def cost_fn(v, inputs):
            images = v["images"]
            matching = match(images, inputs)
            prior = self.tv * total_variation(images) + group.bn_prior(images, self.bn_stats)
            return matching + prior, matching

        shape = (group.num_images, *image_shape)
        init = group.starts(lambda _, r: INITS[self.init](
            torch.randn(shape, generator=restart_generator(seed, r))), self.restarts).to(device)
        result = optimise_restarts(
            {"images": init}, cost_fn, fixed=group.inputs(self.restarts),
            iterations=self.iterations, lr=self.lr, signed=self.signed,
            project=lambda v: v["images"].clamp_(0, 1), batched=self.batched,
            compile=self.compile, label=self.name, progress=progress,
        )
        return group.winners(result.variables["images"], result.matching_costs,
                             result.row_history, self.name,
                             execution={self.name: result.execution.to_json()})
