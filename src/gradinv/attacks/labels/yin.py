"""The negative-row rule of "See through Gradients: Image Batch Recovery via GradInversion"
(Yin, Mallya, Vahdat, Alvarez, Kautz, Molchanov; CVPR 2021).

Each image's label leaves a strongly negative entry in its class's row of the classifier
weight gradient; the labels are the classes with the most negative row minima, one per image,
assuming no label repeats (the paper's setting). Which classes are present is what it reads;
a batch larger than the number of classes cycles through them in that order. Needs: the
classifier's weight update and the number of images; no scale and no bias.
"""
from __future__ import annotations

import torch

from .base import LabelMethod, LabelProblem, register


@register
class NegativeRowRule(LabelMethod):
    name = "yin"
    summary = "Yin et al. 2021: the classes with the most negative weight-row minima, no repeats"

    def counts(self, problem: LabelProblem) -> torch.Tensor:
        update = problem.classifier.weight_update
        if problem.observation.kind == "fedavg":
            update = -update
        order = update.min(1).values.argsort()
        k, n = len(order), problem.num_images
        counts = torch.full((k,), n // k, dtype=torch.long)
        counts[order[: n % k]] += 1
        return counts
