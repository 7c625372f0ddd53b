"""RLU-style counts for FedAvg updates: "Recovering Labels from Local Updates in Federated
Learning" (Chen, Vikalo; ICML 2024).

Over K local SGD steps the classifier's bias moves by -lr * sum_t mean_t(p - y): the labels
enter once per epoch, the predictions p as they evolve during local training. RLU writes the
expected update as a linear function of the counts and solves it by least squares. Here the
predictions are modelled from the update itself: class-wise embeddings (as in iLRG), and the
classifier interpolated from the broadcast weights to the returned ones (theta_0 + t/K delta,
the server knows both ends) over the declared number of steps, their predictions averaged
along the way; then the same equations as iLRG. Where RLU fits the predictions on auxiliary
data with a Monte Carlo simulation of the epochs, this needs no data. For FedSGD (one step)
it is iLRG. Needs: the broadcast weights of the classifier, its update with a bias, the number
of images and, for FedAvg, the client's declared learning rate, batch size and epochs.
"""
from __future__ import annotations

import torch

from .base import (LabelMethod, LabelProblem, bias_missing, integer_counts, mean_gradient,
                   register, scale_missing)
from .ilrg import classwise_embeddings, classwise_probabilities, solve_counts


@register
class LocalUpdates(LabelMethod):
    name = "rlu"
    summary = "Chen & Vikalo 2024 (RLU-style): least squares with predictions along the local steps"

    def unavailable(self, problem: LabelProblem) -> str | None:
        return bias_missing(problem) or scale_missing(problem)

    def counts(self, problem: LabelProblem) -> torch.Tensor:
        layer = problem.classifier
        embeddings = classwise_embeddings(layer)
        steps = problem.local_steps if problem.observation.kind == "fedavg" else 1
        probs = torch.stack([
            classwise_probabilities(layer.weight + t / steps * layer.weight_update,
                                    layer.bias + t / steps * layer.bias_update, embeddings)
            for t in range(steps)]).mean(0)
        gradient = mean_gradient(problem, layer.bias_update)
        return integer_counts(solve_counts(probs, gradient, problem.num_images),
                              problem.num_images)
