"""DP-SGD: "Deep Learning with Differential Privacy" (Abadi et al., CCS 2016), inside every local
step of the client (FedSGD's one gradient, or each of FedAvg's steps)."""
from __future__ import annotations

import torch
from torch.func import grad, vmap

from ..checks import GradinvError, check_float, check_int
from ..models.layers import BatchNorm2d
from ..types import GradientFn, LossFn, Params
from .base import ClientContext, LocalDefense, register
from .noise import check_delta, cover_releases, gaussian_epsilon
from .noise import noise_multiplier as calibrated_noise_multiplier


def private_gradient(loss: LossFn, params: Params, images: torch.Tensor, labels: torch.Tensor, *,
                     max_grad_norm: float, noise_multiplier: float,
                     generator: torch.Generator | None) -> Params:
    """(sum_i clip(g_i) + N(0, (noise_multiplier * max_grad_norm)^2)) / n, with g_i the gradient
    of example i's loss (``torch.func``: vmap over examples of grad) and clip(g) = g *
    min(1, C / (|g| + 1e-6)), |g| the norm over all parameters, as Opacus computes it. No noise
    is drawn when ``noise_multiplier`` is 0 (then it is differentiable and vmappable)."""
    def one(p: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return loss(p, x[None], y[None])

    per_example = vmap(grad(one), in_dims=(None, 0, 0))(params, images, labels)
    norms = torch.sqrt(sum(g.flatten(1).pow(2).sum(1) for g in per_example.values()))
    factor = (max_grad_norm / (norms + 1e-6)).clamp(max=1.0)
    std = noise_multiplier * max_grad_norm
    result = {}
    for k, g in per_example.items():
        total = torch.tensordot(factor, g, dims=1)
        if std:
            total = total + std * torch.randn(total.shape, generator=generator,
                                              dtype=total.dtype).to(total.device)
        result[k] = total / len(images)
    return result


@register
class DPSGD(LocalDefense):
    """Per-example clipping to ``max_grad_norm`` and Gaussian noise of std ``noise_multiplier *
    max_grad_norm`` on the clipped sum, in every local step (defaults: noise multiplier 1.0,
    the floor the Flower docs advise; clipping norm 1.0).

    Or give ``epsilon`` (with ``delta`` and ``steps``, the local steps each example takes part
    in: FedSGD's 1 by default, a FedAvg client's local epochs) instead of a noise multiplier:
    each step is then the Gaussian mechanism on the sum of clipped per-example gradients
    (sensitivity ``max_grad_norm`` when one example is added or removed), and the noise
    multiplier is the smallest for which ``steps`` such releases are (epsilon, delta)-DP for
    each example (``dp-noise``'s calibration, Google's ``dp-accounting``; ``pip install
    'gradinv[dp]'``). A FedAvg step uses one local batch, so an example is in one step per
    epoch; a client using its examples more often than ``steps`` is refused. In a federation
    ``steps`` counts the local steps of every update the client sends (set by the federation
    when not given, ``over_federation``). No amplification by subsampling is claimed.

    A change of the client's computation, not a transform of its result: the update functions
    of ``gradinv.fl.functional`` take it as their gradient. A knowing attacker simulates the
    same per-example clipping without the noise. BatchNorm in train mode mixes the examples of
    a batch, so it is refused (Opacus refuses it too).
    """

    name = "dpsgd"
    summary = ("DP-SGD in every local step: per-example clipping, Gaussian noise on the sum "
               "(a noise multiplier, or one calibrated to epsilon)")

    def __init__(self, *, noise_multiplier: float | None = None, max_grad_norm: float = 1.0,
                 epsilon: float | None = None, delta: float = 1e-5, steps: int = 1,
                 seed: int = 0) -> None:
        check_float("noise_multiplier", noise_multiplier, low=0, where=self.name, optional=True)
        check_float("max_grad_norm", max_grad_norm, low=0, low_open=True, where=self.name)
        check_float("epsilon", epsilon, low=0, low_open=True, where=self.name, optional=True)
        check_delta(delta, where=self.name)
        check_int("steps", steps, low=1, where=self.name)
        check_int("seed", seed, low=0, high=2**63 - 1, where=self.name)
        if epsilon is not None and noise_multiplier is not None:
            raise GradinvError(f"{self.name}: give noise_multiplier or epsilon, not both")
        if epsilon is not None:
            noise_multiplier = calibrated_noise_multiplier(epsilon, delta, steps, "add-remove")
        self.noise_multiplier = 1.0 if noise_multiplier is None else noise_multiplier
        self.max_grad_norm, self.seed = max_grad_norm, seed
        self.calibrated_steps = None if epsilon is None else steps

    @property
    def derived(self) -> dict:
        return {"noise_multiplier": self.noise_multiplier,
                "noise_std": self.noise_multiplier * self.max_grad_norm}

    protects = "each example of a client (example-level: one example present or absent)"

    @classmethod
    def over_federation(cls, settings: dict, participations: int, local_steps: int) -> dict:
        if settings.get("epsilon") is None:
            return settings  # a noise multiplier: accounted, not calibrated
        return cover_releases(cls.name, settings, "steps", participations * local_steps,
                              "the local steps each example takes part in over its "
                              "client's updates")

    def spent_epsilon(self, participations: int, local_steps: int) -> float:
        """Every example counted in every local step of every update (no amplification by
        the client's draw of its batch is claimed)."""
        return gaussian_epsilon(self.noise_multiplier, participations * local_steps,
                             self.settings["delta"], "add-remove")

    def check_releases(self, releases: int) -> None:
        if self.calibrated_steps is not None and releases > self.calibrated_steps:
            raise GradinvError(f"{self.name}: epsilon was calibrated for each example in "
                               f"{self.calibrated_steps} local step(s), but this client uses "
                               f"it in {releases} (its local epochs): give steps={releases}")

    def gradient(self, client: ClientContext, generator: torch.Generator | None) -> GradientFn:
        module = client.model.module
        if module.training and any(isinstance(m, BatchNorm2d) for m in module.modules()):
            raise GradinvError("dpsgd needs per-example gradients, and BatchNorm in train mode "
                               "mixes the examples of a batch: use eval mode (--mode eval; in a "
                               "config or sweep file, threat = { model_mode = \"eval\" })")
        return self._bound(self.noise_multiplier, generator)

    def attacker_gradient(self) -> GradientFn:
        return self._bound(0.0, None)

    def _bound(self, noise_multiplier: float, generator: torch.Generator | None) -> GradientFn:
        def gradient(loss: LossFn, params: Params, images: torch.Tensor,
                     labels: torch.Tensor) -> Params:
            return private_gradient(loss, params, images, labels,
                                    max_grad_norm=self.max_grad_norm,
                                    noise_multiplier=noise_multiplier, generator=generator)
        return gradient
