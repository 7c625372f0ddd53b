"""RLU-style counts, made for FedAvg updates: "Recovering Labels from Local Updates in
Federated Learning" (Chen, Vikalo; ICML 2024).

Over K local SGD steps the classifier's bias moves by -lr * sum_t mean_t(p - y): the labels
enter once per step, the predictions p as they evolve during local training. Read as a mean
gradient g (the declared learning rate and number of steps), the counts are
k = n (a - g), a being the mean prediction along the local steps. RLU estimates it on
auxiliary data with a Monte Carlo simulation of the epochs; here it is the model's mean
softmax on uniform-noise inputs (as LLG+ does at the broadcast weights), averaged over the
states theta_0 + t/K * delta between the broadcast and the returned weights, which the server
knows both. Only the classes the update proves present (``proven_present``), and those
whose estimate is comparable to theirs, get images; the estimate is fitted to them by least
squares under the constraint that the counts sum to n, then rounded. For FedSGD (one step) it is LLG+ restricted to the proven classes. Needs: the
model and the round's weights, the classifier's update with a bias, the number of images and,
for FedAvg, the client's declared learning rate, batch size and epochs.
"""
from __future__ import annotations

import torch

from .base import (LabelMethod, LabelProblem, bias_missing, integer_counts, mean_gradient,
                   proven_present, register, scale_missing)
from .llg import dummy_outputs

# Points of the local trajectory at which the predictions are averaged (at most).
TRAJECTORY_POINTS = 8


@register
class LocalUpdates(LabelMethod):
    name = "rlu"
    summary = "Chen & Vikalo 2024 (RLU-style): least squares with predictions along the local steps"

    def unavailable(self, problem: LabelProblem) -> str | None:
        return bias_missing(problem) or scale_missing(problem)

    def counts(self, problem: LabelProblem) -> torch.Tensor:
        return counts_from_predictions(problem, trajectory_predictions(problem))


def counts_from_predictions(problem: LabelProblem, predictions: torch.Tensor) -> torch.Tensor:
    """The counts n (a - g) for the mean prediction a = ``predictions`` along the local steps
    (``trajectory_predictions``), fitted to the admitted classes."""
    n = problem.num_images
    gradient = mean_gradient(problem, problem.classifier.bias_update)
    estimate = n * (predictions - gradient)
    present = admitted_classes(estimate, proven_present(problem))
    return integer_counts(fit_to_classes(estimate, present, n), n)


def trajectory_predictions(problem: LabelProblem, images: torch.Tensor | None = None
                           ) -> torch.Tensor:
    """(K,) the mean softmax on dummy inputs (or ``images``, see ``dummy_outputs``),
    averaged over evenly spaced local steps t of theta_0 + t/K * delta (FedSGD: the broadcast
    weights only)."""
    observation = problem.observation
    if observation.kind == "fedsgd":
        return dummy_outputs(problem, images=images)[1].mean(0)
    steps = problem.local_steps
    points = torch.linspace(0, steps - 1, min(steps, TRAJECTORY_POINTS)).round() / steps
    predictions = []
    for t in points.tolist():
        state = {**observation.broadcast,
                 **{k: observation.broadcast[k] + t * v for k, v in observation.tensors.items()}}
        predictions.append(dummy_outputs(problem, state, images)[1].mean(0))
    return torch.stack(predictions).mean(0)


def admitted_classes(estimate: torch.Tensor, proven: torch.Tensor) -> torch.Tensor:
    """The proven classes, and those the proof misses (features shared by every class, as in
    an untrained model) whose estimate reaches half that of the smallest proven class (at
    least half an image): the estimates of absent classes stay well below it where the
    dummy predictions are off (a trained model), and those of present ones reach it where
    they are not (benchmarks/RESULTS.md)."""
    if not proven.any():
        return estimate >= estimate.max()
    floor = max(float(estimate[proven].min()) / 2, 0.5)
    return proven | (estimate >= floor)


def fit_to_classes(estimate: torch.Tensor, present: torch.Tensor, total: int) -> torch.Tensor:
    """The counts closest to ``estimate`` (least squares) that are zero outside ``present``
    and sum to ``total``: the shortfall is shared equally by the present classes."""
    fitted = torch.zeros_like(estimate)
    fitted[present] = estimate[present] + (total - estimate[present].sum()) / present.sum()
    return fitted
