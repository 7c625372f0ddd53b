"""gradinv's counting rule: the classes with a negative score, then repeats by equal shares.

Every class whose bias gradient (or, without a bias, weight-row sum) is negative is in the
batch. When there are fewer such classes than images, the remaining images go, one at a time,
to the class whose score stays most negative after removing an equal share of the total
negative mass per image already assigned to it. Exact when every label in the batch is
distinct; a baseline otherwise. Needs: the classifier's update and the number of images; no
scale, so it also reads a FedAvg update whose local recipe is withheld.
"""
from __future__ import annotations

import torch

from .base import LabelMethod, LabelProblem, register, sign_scores


@register
class CountingRule(LabelMethod):
    name = "count"
    summary = "negative scores first, then repeats by equal shares of the negative mass"

    def counts(self, problem: LabelProblem) -> torch.Tensor:
        scores = sign_scores(problem)
        n = problem.num_images
        counts = torch.zeros(len(scores), dtype=torch.long)
        if n == 1:
            counts[int(scores.argmin())] = 1
            return counts
        negative = [int(c) for c in scores.argsort()[:n] if scores[c] < 0]
        counts[negative] = 1
        share = scores.clamp(max=0).sum().abs() / n
        remaining = scores.clone()
        remaining[negative] += share
        for _ in range(n - len(negative)):
            c = int(remaining.argmin())
            counts[c] += 1
            remaining[c] += share if share > 0 else float("inf")
        return counts
