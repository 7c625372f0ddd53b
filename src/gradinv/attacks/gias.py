"""GIAS: gradient inversion in alternative spaces, the method of "Gradient Inversion with
Generative Image Prior" (Kim, Jeon, Ok, Lee, Oh; NeurIPS 2021), section 3.2.

Stage 1 is GI-z. Stage 2 keeps each image's latent code fixed and gives every image its own copy
of the generator's parameters, initialised at the pretrained ones, optimised jointly for the
whole batch: the prior guides the search but no longer cages it. The copies of all images and
all restarts are stacked along leading dimensions and evaluated with ``functional_call`` under
``vmap`` (one batched computation; memory ~ images x restarts x generator size). An optional L2
penalty keeps the copies near the pretrained weights (off by default, as in the paper, where the
small learning rate is the only leash). Needs what GI-z needs.

Learning rate of the generator stage: the paper uses 1e-3 for StyleGAN2, whose equalised-lr
weights are O(1). A DCGAN's weights are ~50x smaller, so the same Adam step moves them ~50x
further relative to their size; measured on held-out Fashion-MNIST (ResNet-18, batch 4, 400
iterations) 1e-3 gave 13.6 dB and 1e-4 gave 16.4 dB, hence the default 1e-4 here.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, vmap

from ..priors import Prior
from ..types import GradinvError, Observation, Reconstruction
from .base import Attack, check_common, pick_winner, prepare_target, register
from .gi_z import GIz, resolve_prior
from .objectives import total_variation
from ..optim import optimise_restarts


@register
class GIAS(Attack):
    name = "gias"
    summary = "Kim et al. 2021: GI-z, then per-image fine-tuning of the generator's parameters"

    def __init__(self, *, prior: Prior | str = "fashion-mnist", iterations: int = 2000,
                 latent_iterations: int | None = None, lr: float = 1e-4, latent_lr: float = 3e-2,
                 restarts: int = 4, tv: float = 1e-6, latent_tv: float = 1e-4,
                 latent_norm: float = 0.0, distance: float = 0.0, cost: str = "cosine",
                 top_k: int | None = None, signed: bool = False, latent_signed: bool = False,
                 batched: bool = True) -> None:
        check_common(iterations, restarts, lr, cost)
        latent_iterations = iterations * 7 // 20 if latent_iterations is None else latent_iterations
        if not 0 < latent_iterations < iterations:
            raise GradinvError("GIAS needs 0 < latent_iterations < iterations (the total budget)")
        self.prior = resolve_prior(prior)
        self.latent_search = GIz(prior=self.prior, iterations=latent_iterations, lr=latent_lr,
                                 restarts=restarts, tv=latent_tv, latent_norm=latent_norm,
                                 cost=cost, top_k=top_k, signed=latent_signed, batched=batched)
        self.iterations = iterations - latent_iterations
        self.lr, self.restarts, self.tv, self.distance = lr, restarts, tv, distance
        self.cost, self.top_k, self.signed, self.batched = cost, top_k, signed, batched

    def reconstruct(self, model: nn.Module, observation: Observation, *,
                    image_shape: tuple[int, int, int], seed: int = 0,
                    device: str | torch.device = "cpu", progress: bool = True) -> Reconstruction:
        device = torch.device(device)
        target = prepare_target(model, observation, image_shape=image_shape, device=device)
        stage1 = self.latent_search.search(target, image_shape, seed, device, progress)
        z = stage1.variables["z"]
        gen = self.prior.generator
        pretrained = {k: v.detach() for k, v in gen.named_parameters()}
        buffers = {k: v.detach() for k, v in gen.named_buffers()}
        match = target.matching_cost(self.cost, self.top_k)
        render = self._render_batched if self.batched else self._render_loop

        def cost_fn(v, fixed):
            raw = render(v, buffers, fixed["z"])
            images = self.prior.to_model_input(raw, image_shape[-1], image_shape[0])
            matching = match(images, target.labels)
            total = matching + self.tv * total_variation(images)
            if self.distance:
                total = total + self.distance * sum(
                    (v[k] - pretrained[k]).pow(2).sum() for k in v)
            return total, matching

        restarts, batch = z.shape[:2]
        copies = {k: p.expand(restarts, batch, *p.shape).clone() for k, p in pretrained.items()}
        stage2 = optimise_restarts(copies, cost_fn, fixed={"z": z}, iterations=self.iterations,
                                   lr=self.lr, signed=self.signed, batched=self.batched,
                                   label=self.name, progress=progress)
        with torch.no_grad():
            raw = torch.stack([render({k: v[r] for k, v in stage2.variables.items()}, buffers, z[r])
                               for r in range(restarts)])
        images = self.prior.to_model_input(raw, image_shape[-1], image_shape[0])
        return pick_winner(target, images, stage2.matching_costs, stage1.history + stage2.history,
                           self.name, latent_iterations=self.latent_search.iterations,
                           latent_costs=[float(c) for c in stage1.matching_costs])

    def _render_batched(self, params: dict, buffers: dict, z: torch.Tensor) -> torch.Tensor:
        """G_i(z_i) for every image i at once: vmap over the stacked per-image parameters."""
        def one(p, zi):
            return functional_call(self.prior.generator, (p, buffers), (zi[None],))[0]
        return vmap(one)(params, z)

    def _render_loop(self, params: dict, buffers: dict, z: torch.Tensor) -> torch.Tensor:
        """The same, one image at a time (the official code's design; reference and benchmark)."""
        return torch.stack([
            functional_call(self.prior.generator, ({k: v[i] for k, v in params.items()}, buffers),
                            (z[i:i + 1],))[0]
            for i in range(len(z))
        ])
