"""iLRG: "Instance-wise Batch Label Restoration via Gradients in Federated Learning" (Ma, Wu,
Sun, Ma, Wang, Sun, Xu; ICLR 2023).

The classifier's mean gradient is g_b = mean(p - y) for the bias and g_W = mean((p - y) h^T)
for the weights, so the ratio of a class's weight row to its bias entry is a weighted mean of
the batch's features, dominated by that class's images: an approximate class-wise embedding.
Its post-softmax probabilities in the broadcast weights stand for the mean prediction on the
class's images, and the bias gradient then gives linear equations in the counts k:
sum_j k_j P_j - k = n g_b, with sum_j k_j = n, solved with the Moore-Penrose pseudoinverse and
rounded. Exact for a linear model with identical images per class; made for untrained models,
whose predictions vary little within a class. Needs: the broadcast weights of the classifier,
its update with a bias, the number of images and, for a FedAvg update, the declared local
recipe (read as one mean gradient at the broadcast weights; ``rlu`` models the local steps).
"""
from __future__ import annotations

import torch

from .base import (Classifier, LabelMethod, LabelProblem, bias_missing, integer_counts,
                   mean_gradient, register, scale_missing)


@register
class InstanceWise(LabelMethod):
    name = "ilrg"
    summary = "Ma et al. 2023: class-wise embeddings and probabilities, counts by pseudoinverse"

    def unavailable(self, problem: LabelProblem) -> str | None:
        return bias_missing(problem) or scale_missing(problem)

    def counts(self, problem: LabelProblem) -> torch.Tensor:
        layer = problem.classifier
        probs = classwise_probabilities(layer.weight, layer.bias, classwise_embeddings(layer))
        gradient = mean_gradient(problem, layer.bias_update)
        return integer_counts(solve_counts(probs, gradient, problem.num_images),
                              problem.num_images)


def classwise_embeddings(layer: Classifier) -> torch.Tensor:
    """(K, d): each class's weight-row update over its bias update, a weighted mean of the
    features that its own images dominate (a zero bias entry is nudged off zero)."""
    bias = layer.bias_update
    tiny = torch.finfo(bias.dtype).tiny ** 0.5
    safe = torch.where(bias.abs() < tiny, torch.full_like(bias, tiny).copysign(bias), bias)
    return layer.weight_update / safe[:, None]


def classwise_probabilities(weight: torch.Tensor, bias: torch.Tensor,
                            embeddings: torch.Tensor) -> torch.Tensor:
    """(K, K): row j is the softmax prediction for class j's embedding."""
    return (embeddings @ weight.T + bias).softmax(-1)


def solve_counts(probs: torch.Tensor, gradient: torch.Tensor, n: int) -> torch.Tensor:
    """Real counts k with sum_j k_j probs[j] - k = n * gradient and sum k = n, in the least
    squares sense (Moore-Penrose pseudoinverse)."""
    k = len(gradient)
    ones, identity = torch.ones(1, k, dtype=probs.dtype), torch.eye(k, dtype=probs.dtype)
    system = torch.cat([ones, probs.T - identity])
    values = torch.cat([torch.tensor([float(n)], dtype=probs.dtype), n * gradient])
    return torch.linalg.pinv(system) @ values
