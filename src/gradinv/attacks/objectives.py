"""Gradient-matching costs and image priors shared by every attack."""
from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from ..checks import GradinvError
from ..types import Params

BNStats = dict[str, tuple[torch.Tensor, torch.Tensor]]


def cosine_cost(pred: Params, target: Params, names: list[str]) -> torch.Tensor:
    """1 - <pred, target> / (|pred| |target|), sums taken over all listed layers (Geiping et al.)."""
    dot = sum((pred[n] * target[n]).sum() for n in names)
    pred_sq = sum(pred[n].pow(2).sum() for n in names)
    target_sq = sum(target[n].pow(2).sum() for n in names)
    return 1 - dot / (pred_sq.sqrt() * target_sq.sqrt() + 1e-12)


def l2_cost(pred: Params, target: Params, names: list[str]) -> torch.Tensor:
    """Squared Euclidean distance over all listed layers (DLG)."""
    return sum((pred[n] - target[n]).pow(2).sum() for n in names)


COSTS = {"cosine": cosine_cost, "l2": l2_cost}


def top_k_layers(target: Params, k: int | None) -> list[str]:
    """The names of the k tensors with the largest observed norm (all of them when k is None);
    a k beyond the update's tensors would silently match them all, so it is refused."""
    names = list(target)
    if k is not None and k > len(names):
        raise GradinvError(f"top_k {k} is more than the {len(names)} tensors of the update")
    if k is None or k == len(names):
        return names
    norms = torch.stack([target[n].norm() for n in names])
    keep = set(norms.topk(k).indices.tolist())
    return [n for i, n in enumerate(names) if i in keep]


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels: favours piecewise-smooth images."""
    dx = (images[..., :, 1:] - images[..., :, :-1]).abs().mean()
    dy = (images[..., 1:, :] - images[..., :-1, :]).abs().mean()
    return dx + dy


class BNInputs:
    """The per-channel mean and (biased) variance of the input of named BatchNorm layers of
    ``module``, recorded by forward pre-hooks registered once, here: a hook registered inside
    a step breaks the graph ``torch.compile`` traces (and dynamo then runs the whole step
    eagerly). The hooks record only during ``statistics``, not when the module computes the
    simulated update."""

    def __init__(self, module: nn.Module, names: list[str]) -> None:
        self.module, self.names = module, names
        self.recording = False
        self.seen: BNStats = {}
        layers = dict(module.named_modules())
        for name in names:
            layers[name].register_forward_pre_hook(self._recorder(name))

    def _recorder(self, name: str):
        def record(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            if self.recording:
                x = inputs[0]
                self.seen[name] = (x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=False))
        return record

    def statistics(self, state: tuple[Params, Params], images: torch.Tensor) -> BNStats:
        """The statistics when ``images`` run through the module with ``state`` (parameters,
        buffers); taken out of the recorder within the same call, so this works inside
        ``vmap`` over restarts and under ``grad``."""
        self.recording = True
        try:
            functional_call(self.module, state, (images,))
        finally:
            self.recording = False
        return {name: self.seen.pop(name) for name in self.names}


def bn_statistics_distance(inputs: BNInputs, state: tuple[Params, Params], images: torch.Tensor,
                           observed: BNStats) -> torch.Tensor:
    """sum over BatchNorm layers l of |mean_l(x) - mu_l|_2 + |var_l(x) - sigma2_l|_2, where
    mean_l / var_l (biased) are the per-channel statistics of the input of layer l when the
    candidate ``images`` run through the module with ``state`` (parameters, buffers;
    ``BNInputs``), and (mu_l, sigma2_l) the client's observed ones: the BN prior of Yin et al.
    (CVPR 2021).
    """
    seen = inputs.statistics(state, images)
    return sum((seen[n][0] - mean).norm() + (seen[n][1] - var).norm()
               for n, (mean, var) in observed.items())
