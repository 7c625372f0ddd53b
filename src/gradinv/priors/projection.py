"""How well a prior can represent given images at all: the closest G(z) in pixel distance.

A latent-space attack (GI-z) cannot do better than this, whatever the gradient tells it: the
projection sees the true images, the attack only their gradient. Comparing an attack's PSNR with
this ceiling says whether the prior or the search limits it, and it measures a prior's quality
on held-out data without a discriminator or a reference network.
"""
from __future__ import annotations

import torch

from ..execution import fp32_precision
from ..optim import optimise_restarts
from .prior import Prior


def project(prior: Prior, images: torch.Tensor, *, iterations: int = 500, restarts: int = 4,
            lr: float = 3e-2, seed: int = 0) -> torch.Tensor:
    """For each image, the G(z) with the lowest MSE that Adam finds from ``restarts`` codes.

    ``images`` are model input in [0, 1], shape (n, c, h, h); the result has the same shape.
    Every (restart, image) pair is optimised independently, as one batched computation.
    """
    n, shape = len(images), tuple(images.shape[1:])
    prior.to(images.device)

    def cost_fn(v, fixed):
        error = (prior.render(v["z"], shape) - fixed["truth"]).pow(2).mean()
        return error, error

    noise = torch.Generator().manual_seed(seed)
    z = torch.randn(restarts * n, 1, prior.latent_dim, generator=noise).to(images.device)
    truth = images.repeat(restarts, 1, 1, 1)[:, None]
    result = optimise_restarts({"z": z}, cost_fn, fixed={"truth": truth}, iterations=iterations,
                               lr=lr, signed=False, label="projection", progress=False)
    best = result.matching_costs.view(restarts, n).argmin(0)
    with torch.no_grad(), fp32_precision():
        fitted = prior.render(result.variables["z"][:, 0], shape).view(restarts, n, *shape)
    return fitted[best, torch.arange(n)]
