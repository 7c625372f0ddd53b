"""Label inference from the last layer's update (iDLG for one image, a counting rule for batches)."""
from __future__ import annotations

import torch
from torch import nn

from ..models.inspect import last_layer
from ..checks import GradinvError
from ..types import Observation


def _class_scores(model: nn.Module, observation: Observation) -> torch.Tensor:
    """Per-class last-layer gradient; negative for the classes in the batch.

    With softmax cross-entropy the gradient w.r.t. the logits is p - y, negative only at true
    labels. The bias gradient is exactly its batch mean; without a bias, the weight row sums keep
    the sign when the features are non-negative (ReLU, sigmoid). A FedAvg delta points the other
    way (theta_K - theta_0 ~ -lr * gradient).
    """
    name = last_layer(model)
    bias = observation.tensors.get(name + ".bias")
    scores = bias if bias is not None else observation.tensors[name + ".weight"].sum(dim=1)
    return scores if observation.kind == "fedsgd" else -scores


def estimate_num_images(model: nn.Module, observation: Observation) -> int:
    """When the count is withheld: the number of classes with a negative score (at least 1)."""
    return max(int((_class_scores(model, observation) < 0).sum()), 1)


def infer_labels(model: nn.Module, observation: Observation, num_images: int) -> torch.Tensor:
    """iDLG for one image; for a batch, every class with a negative score, then repeats.

    Each class with a negative score is in the batch. When there are fewer such classes than
    images, the remaining picks go, one at a time, to the class whose score stays most negative
    after removing an equal share of the total negative mass per image already assigned to it.
    """
    if num_images < 1:
        raise GradinvError("label inference needs at least one image")
    scores = _class_scores(model, observation).detach().double().cpu()
    if num_images == 1:
        return scores.argmin().view(1)
    order = scores.argsort()
    picked = [int(c) for c in order[:num_images] if scores[c] < 0]
    share = scores.clamp(max=0).sum().abs() / num_images
    remaining = scores.clone()
    for c in picked:
        remaining[c] += share
    while len(picked) < num_images:
        c = int(remaining.argmin())
        picked.append(c)
        remaining[c] += share if share > 0 else float("inf")
    return torch.tensor(sorted(picked), dtype=torch.long)
