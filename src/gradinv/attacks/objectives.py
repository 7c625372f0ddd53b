"""Gradient-matching costs and image priors shared by every attack."""
from __future__ import annotations

import torch

Params = dict[str, torch.Tensor]


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
    """The names of the k tensors with the largest observed norm (all of them when k is None)."""
    names = list(target)
    if k is None or k >= len(names):
        return names
    norms = torch.stack([target[n].norm() for n in names])
    keep = set(norms.topk(k).indices.tolist())
    return [n for i, n in enumerate(names) if i in keep]


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels: favours piecewise-smooth images."""
    dx = (images[..., :, 1:] - images[..., :, :-1]).abs().mean()
    dy = (images[..., 1:, :] - images[..., :-1, :]).abs().mean()
    return dx + dy
