"""GI-z: latent-space search of "Gradient Inversion with Generative Image Prior"
(Kim, Jeon, Ok, Lee, Oh; NeurIPS 2021), section 3.1.

Images are G(z) for a frozen pretrained generator G; the latent codes z of all images and all
restarts are optimised together (restarts batched with vmap) to match the observed update with
the same cost, schedule and label handling as GI. Needs: the model, the update, the number of
images (or an estimate), labels (or inferred) and a generator trained on similar data.
``bn_stats`` weighs the BatchNorm-statistics prior when the threat model grants them (as in GI).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from ..optim import OptimisationResult, optimise_restarts
from ..priors import Prior, load_prior
from ..checks import GradinvError
from ..types import Reconstruction
from .base import check_hyperparameters, register, restart_generator
from .group import GroupedAttack, TargetGroup
from .labels import AUTO
from .objectives import total_variation


def resolve_prior(prior: Prior | str, attack: str) -> Prior:
    """A ``Prior`` as given, or loaded by name (see ``gradinv.priors.load_prior``)."""
    if isinstance(prior, Prior):
        return prior
    if not isinstance(prior, str):
        raise GradinvError(f"{attack}: prior must be a gradinv.priors.Prior or a prior name, not "
                           f"a {type(prior).__name__}")
    return load_prior(prior)


@register
class GIz(GroupedAttack):
    name = "gi-z"
    summary = "Kim et al. 2021: search the latent code of a frozen pretrained generator"

    def __init__(self, *, prior: Prior | str = "fashion-mnist", iterations: int = 2000,
                 lr: float = 3e-2, restarts: int = 4, tv: float = 1e-4, latent_norm: float = 0.0,
                 bn_stats: float = 1e-2, cost: str = "cosine", top_k: int | None = None,
                 signed: bool = False, batched: bool = True, compile: str = "auto",
                 label_method: str = AUTO) -> None:
        check_hyperparameters(self.name, locals())
        self.label_method = label_method
        self.prior = resolve_prior(prior, self.name)
        self.iterations, self.lr, self.restarts, self.tv = iterations, lr, restarts, tv
        self.bn_stats = bn_stats
        self.latent_norm, self.cost, self.top_k = latent_norm, cost, top_k
        self.signed, self.batched, self.compile = signed, batched, compile

    def invert_group(self, group: TargetGroup, *, image_shape: tuple[int, int, int], seed: int,
                     device: torch.device, progress: bool) -> list[Reconstruction]:
        """Every client of ``group`` x ``restarts`` latent searches in one loop."""
        result = self.search_group(group, image_shape, seed, device, progress)
        images = self.prior.render(result.variables["z"], image_shape)
        return group.winners(images, result.matching_costs, result.row_history, self.name,
                             execution={self.name: result.execution.to_json()})

    def search_group(self, group: TargetGroup, image_shape: tuple[int, int, int],
                     seed: int | Sequence[int], device: torch.device, progress: bool
                     ) -> OptimisationResult:
        """Optimise z for every client of ``group`` x ``restarts`` (rows client-major,
        ``TargetGroup``); returns every row's latents and matching cost (GIAS's and GIML's
        first stage too). The layers matched are the group's (its ``top_k``); ``seed``: one
        for every client, or each client's own."""
        seeds = [seed] * len(group.targets) if isinstance(seed, int) else list(seed)
        self.prior.to(device)
        match = group.matching_cost(self.cost)

        def cost_fn(v, inputs):
            images = self.prior.render(v["z"], image_shape)
            matching = match(images, inputs)
            prior = (self.tv * total_variation(images) + group.bn_prior(images, self.bn_stats)
                     + self.latent_norm * v["z"].norm(dim=-1).mean())
            return matching + prior, matching

        init = group.starts(lambda c, r: torch.randn((group.num_images, self.prior.latent_dim),
                                                     generator=restart_generator(seeds[c], r)),
                            self.restarts).to(device)
        return optimise_restarts({"z": init}, cost_fn, fixed=group.inputs(self.restarts),
                                 iterations=self.iterations, lr=self.lr, signed=self.signed,
                                 batched=self.batched, compile=self.compile, label=self.name,
                                 progress=progress)
