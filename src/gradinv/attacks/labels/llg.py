"""Count estimates from gradient magnitudes: LLG+ of "User-Level Label Leakage from Gradients
in Federated Learning" (Wainakh, Ventola, Müßig, Keim, Cordero, Zimmer, Grube, Kersting,
Mühlhäuser; PoPETs 2022).

An image of class c pulls its class's bias gradient down by its impact (1 - p_c) / n and
every other class's up by p_c / n (for the weight-row sums, both times the sum of its
features). LLG+ estimates the impact and this offset by running the model, in the round's
weights, on dummy inputs, then reads each class's count off the magnitude of its gradient:
k_c = n (E[p_c a] - g_c) / E[a], with a = 1 on the bias and a = the feature sum on the weight
rows (used when the layer has no bias). Needs: the model and broadcast weights, the number of
images and, for a FedAvg update, the declared local recipe (to read it as a mean gradient).
"""
from __future__ import annotations

import torch

from ...fl.functional import FunctionalModel
from .base import (LabelMethod, LabelProblem, integer_counts, mean_gradient, register,
                   scale_missing)

DUMMY_IMAGES = 64


@register
class GradientMagnitude(LabelMethod):
    name = "llg"
    summary = "Wainakh et al. 2022 (LLG+): counts from gradient magnitudes, impact from dummies"

    def unavailable(self, problem: LabelProblem) -> str | None:
        return scale_missing(problem)

    def counts(self, problem: LabelProblem) -> torch.Tensor:
        layer = problem.classifier
        features, probs = dummy_outputs(problem)
        if layer.bias_update is not None:
            weight, gradient = torch.ones(len(features), dtype=torch.float64), layer.bias_update
        else:
            weight, gradient = features.sum(1), layer.weight_update.sum(1)
        gradient = mean_gradient(problem, gradient)
        offset = (probs * weight[:, None]).mean(0)
        estimate = problem.num_images * (offset - gradient) / weight.mean()
        return integer_counts(estimate, problem.num_images)


def dummy_outputs(problem: LabelProblem, state: dict[str, torch.Tensor] | None = None,
                  images: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The classifier's input features and softmax outputs on uniform-noise images (a fixed
    draw, so the estimate is reproducible; or ``images``: benchmarks/labels.py probes what
    images like the client's would give), in the model's mode and the round's weights (or
    ``state``)."""
    observation = problem.observation
    model = FunctionalModel(problem.model, observation.threat.model_mode,
                            state=observation.broadcast if state is None else state)
    classifier = dict(model.module.named_modules())[problem.classifier.name]
    seen: list[torch.Tensor] = []
    hook = classifier.register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0]))
    if images is None:
        images = torch.rand((DUMMY_IMAGES, *problem.image_shape),
                            generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad():
            logits = model.module(images.to(next(model.module.parameters()).device))
    finally:
        hook.remove()
    return seen[0].double().cpu(), logits.double().softmax(-1).cpu()
