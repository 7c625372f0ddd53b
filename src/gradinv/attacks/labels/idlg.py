"""iDLG's sign rule: "iDLG: Improved Deep Leakage from Gradients" (Zhao, Mopuri, Bilen; 2020).

For one image, the classifier weight row of its label is the only one whose gradient sums
below zero (non-negative features: ReLU, sigmoid). Extended to a batch as in the label
literature: the classes with a negative row sum are present, and the images are shared
evenly among them (the most negative first), since the sign says nothing about how many.
Needs: the classifier's weight update and the number of images; no scale and no bias.
"""
from __future__ import annotations

import torch

from .base import LabelMethod, LabelProblem, register


@register
class SignRule(LabelMethod):
    name = "idlg"
    summary = "Zhao et al. 2020: negative weight-row sums are present, images shared evenly"

    def counts(self, problem: LabelProblem) -> torch.Tensor:
        rows = problem.classifier.weight_update.sum(1)
        if problem.observation.kind == "fedavg":
            rows = -rows
        order = rows.argsort()
        present = order[: max(int((rows < 0).sum()), 1)]
        n = problem.num_images
        counts = torch.zeros(len(rows), dtype=torch.long)
        counts[present] = n // len(present)
        counts[present[: n % len(present)]] += 1
        return counts
