"""GIAS: gradient inversion in alternative spaces, the method of "Gradient Inversion with
Generative Image Prior" (Kim, Jeon, Ok, Lee, Oh; NeurIPS 2021), section 3.2.

Stage 1 is GI-z. Stage 2 keeps each image's latent code fixed and gives every image its own copy
of the generator's parameters, initialised at the pretrained ones, optimised jointly for the
whole batch: the prior guides the search but no longer cages it. The copies of all images and
all restarts are stacked along leading dimensions and evaluated with ``functional_call`` under
``vmap`` (one batched computation; memory ~ images x restarts x generator size). An optional L2
penalty keeps the copies near the pretrained weights (off by default, as in the paper, where the
small learning rate is the only leash). Needs what GI-z needs. ``bn_stats`` weighs the
BatchNorm-statistics prior in both stages when the threat model grants them (as in GI).

Learning rate of the generator stage: the paper uses 1e-3 for StyleGAN2, whose equalised-lr
weights are O(1). A DCGAN's weights are ~50x smaller, so the same Adam step moves them ~50x
further relative to their size; measured on held-out Fashion-MNIST (ResNet-18, batch 4, 400
iterations) 1e-3 gave 13.6 dB and 1e-4 gave 16.4 dB, hence the default 1e-4 here.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, vmap

from ..optim import OptimisationResult, optimise_restarts
from ..priors import Prior
from ..checks import GradinvError
from ..types import Reconstruction
from .base import check_hyperparameters, register
from .group import GroupedAttack, TargetGroup
from .labels import AUTO
from .gi_z import GIz, resolve_prior
from .objectives import total_variation


@register
class GIAS(GroupedAttack):
    name = "gias"
    summary = "Kim et al. 2021: GI-z, then per-image fine-tuning of the generator's parameters"

    def __init__(self, *, prior: Prior | str = "fashion-mnist", iterations: int = 2000,
                 latent_iterations: int | None = None, lr: float = 1e-4, latent_lr: float = 3e-2,
                 restarts: int = 4, tv: float = 1e-6, latent_tv: float = 1e-4,
                 latent_norm: float = 0.0, distance: float = 0.0, bn_stats: float = 1e-2,
                 cost: str = "cosine", top_k: int | None = None, signed: bool = False,
                 latent_signed: bool = False, batched: bool = True, compile: str = "auto",
                 label_method: str = AUTO) -> None:
        check_hyperparameters(self.name, locals())
        self.label_method = label_method
        if latent_iterations is None:
            if iterations < 2:  # the user set no latent_iterations: do not blame it
                raise GradinvError(f"gias: iterations must be at least 2, not {iterations}: "
                                   "its latent stage takes 35 % of them (at least 1) and its "
                                   "generator stage the rest")
            latent_iterations = max(1, iterations * 7 // 20)
        if latent_iterations >= iterations:
            raise GradinvError(f"gias: latent_iterations ({latent_iterations}) must be less than "
                               f"iterations ({iterations}), the budget of both stages together")
        self.prior = resolve_prior(prior, self.name)
        self.latent_search = GIz(prior=self.prior, iterations=latent_iterations, lr=latent_lr,
                                 restarts=restarts, tv=latent_tv, latent_norm=latent_norm,
                                 bn_stats=bn_stats, cost=cost, top_k=top_k, signed=latent_signed,
                                 batched=batched, compile=compile)
        self.iterations = iterations - latent_iterations
        self.lr, self.restarts, self.tv, self.distance = lr, restarts, tv, distance
        self.bn_stats = bn_stats
        self.cost, self.top_k, self.signed, self.batched = cost, top_k, signed, batched
        self.compile = compile

    def invert_group(self, group: TargetGroup, *, image_shape: tuple[int, int, int], seed: int,
                     device: torch.device, progress: bool) -> list[Reconstruction]:
        """Both stages for every client of ``group`` x ``restarts`` (rows client-major)."""
        stage1 = self.latent_search.search_group(group, image_shape, seed, device, progress)
        z = stage1.variables["z"]
        stage2 = adapt_generator(
            self.prior, group, z, image_shape, iterations=self.iterations, lr=self.lr,
            tv=self.tv, distance=self.distance, bn=self.bn_stats, cost=self.cost,
            signed=self.signed, per_image=True, batched=self.batched, compile=self.compile,
            label=self.name, progress=progress)
        buffers = {k: v.detach() for k, v in self.prior.generator.named_buffers()}
        with torch.no_grad():
            raw = torch.stack([
                render_copies(self.prior.generator, {k: v[r] for k, v in stage2.variables.items()},
                              buffers, z[r], batched=self.batched)
                for r in range(len(z))])
        images = self.prior.to_model_input(raw, image_shape[-1], image_shape[0])
        latent_costs = stage1.matching_costs
        return group.winners(
            images, stage2.matching_costs, torch.cat([stage1.row_history, stage2.row_history]),
            self.name, per_client=lambda rows: {
                "latent_costs": [float(c) for c in latent_costs[rows]]},
            latent_iterations=self.latent_search.iterations,
            execution={self.latent_search.name: stage1.execution.to_json(),
                       self.name: stage2.execution.to_json()})


def adapt_generator(
    prior: Prior,
    group: TargetGroup,
    z: torch.Tensor,
    image_shape: tuple[int, int, int],
    *,
    iterations: int,
    lr: float,
    tv: float = 1e-6,
    distance: float = 0.0,
    bn: float = 0.0,
    cost: str = "cosine",
    signed: bool = False,
    per_image: bool = True,
    batched: bool = True,
    compile: str = "auto",
    label: str = "generator stage",
    progress: bool = True,
) -> OptimisationResult:
    """GIAS's generator stage: fit copies of G, started at G's weights, to the observed
    updates of ``group`` (one, or the clients of a round: rows client-major) with the latent
    codes ``z`` (rows, images, latent_dim) held fixed.

    ``per_image=True`` gives every image its own copy (GIAS); ``False`` gives each row one
    copy shared by its images (GIML's adaptation step). The result's variables are the copies,
    shaped (rows, images or 1, *parameter shape). ``bn`` weighs the BatchNorm-statistics
    prior (``Target.bn_prior``; no effect when the statistics were not observed).
    """
    gen = prior.generator
    pretrained = {k: v.detach() for k, v in gen.named_parameters()}
    buffers = {k: v.detach() for k, v in gen.named_buffers()}
    match = group.matching_cost(cost)

    def cost_fn(v, fixed):
        raw = render_copies(gen, v, buffers, fixed["z"], batched=batched)
        images = prior.to_model_input(raw, image_shape[-1], image_shape[0])
        matching = match(images, fixed)
        total = matching + tv * total_variation(images) + group.bn_prior(images, bn)
        if distance:
            total = total + distance * sum((v[k] - pretrained[k]).pow(2).sum() for k in v)
        return total, matching

    rows, batch = z.shape[:2]
    copies_per_row = batch if per_image else 1
    copies = {k: p.expand(rows, copies_per_row, *p.shape).clone()
              for k, p in pretrained.items()}
    fixed = {"z": z, **group.inputs(rows // len(group.targets))}
    return optimise_restarts(copies, cost_fn, fixed=fixed, iterations=iterations, lr=lr,
                             signed=signed, batched=batched, compile=compile, label=label,
                             progress=progress)


def render_copies(generator: nn.Module, params: dict, buffers: dict, z: torch.Tensor, *,
                  batched: bool = True) -> torch.Tensor:
    """G_i(z_i) for every image i. ``params`` have a leading copy dimension: one copy per image,
    or a single copy shared by all images.

    Batched, the per-image copies are evaluated at once with ``vmap``; otherwise one image at a
    time (the official code's design; the reference for tests and benchmarks).
    """
    if next(iter(params.values())).shape[0] == 1:
        return functional_call(generator, ({k: v[0] for k, v in params.items()}, buffers), (z,))
    if batched:
        def one(p, zi):
            return functional_call(generator, (p, buffers), (zi[None],))[0]
        return vmap(one)(params, z)
    return torch.stack([
        functional_call(generator, ({k: v[i] for k, v in params.items()}, buffers), (z[i:i + 1],))[0]
        for i in range(len(z))
    ])
