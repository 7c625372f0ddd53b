"""What every label-inference method shares: the problem it solves, the registry, and the
pieces several methods read off the classifier layer.

A method answers one question: how many images of each class made the observed update? It
returns the counts (a multiset of labels, one per image); the attacks then search images for
those labels. Methods differ in what they assume and what the attacker must know, which each
method's docstring says.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import torch
from torch import nn

from ...checks import GradinvError
from ...models.inspect import last_layer
from ...registry import Registry
from ...types import Observation


@dataclass(frozen=True)
class Classifier:
    """The classifier layer as the server sees it: the weights it broadcast (``weight``,
    ``bias``) and the client's update of them (``weight_update``, ``bias_update``; None when
    the layer has no bias). Float64 on the CPU: the methods solve small linear systems."""

    name: str
    weight: torch.Tensor
    bias: torch.Tensor | None
    weight_update: torch.Tensor
    bias_update: torch.Tensor | None


@dataclass(frozen=True)
class LabelProblem:
    """What label inference may use: the model's architecture, the observation (the update,
    the round's broadcast weights and only the metadata the threat model grants), the number
    of images, and the input shape (for methods that run the model on dummy inputs)."""

    model: nn.Module
    observation: Observation
    num_images: int
    image_shape: tuple[int, int, int]

    @cached_property
    def classifier(self) -> Classifier:
        name = last_layer(self.model)
        tensors, broadcast = self.observation.tensors, self.observation.broadcast
        if name + ".weight" not in tensors or name + ".weight" not in broadcast:
            raise GradinvError(f"label inference needs the update and broadcast weights of the "
                               f"classifier layer {name!r}, which the observation lacks")
        def f64(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.detach().double().cpu()
        return Classifier(name, f64(broadcast[name + ".weight"]),
                          f64(broadcast.get(name + ".bias")), f64(tensors[name + ".weight"]),
                          f64(tensors.get(name + ".bias")))

    @property
    def local_steps(self) -> int:
        """How many local SGD steps made the update: 1 for FedSGD, epochs * ceil(n / local
        batch size) for FedAvg (the declared recipe)."""
        fedavg = self.observation.fedavg
        if self.observation.kind == "fedsgd" or fedavg is None:
            return 1
        return fedavg.epochs * math.ceil(self.num_images / fedavg.local_batch_size)


class LabelMethod(ABC):
    """One paper, one class: ``counts(problem)`` gives how many images of each class."""

    name: ClassVar[str]
    summary: ClassVar[str]

    def unavailable(self, problem: LabelProblem) -> str | None:
        """Why this method cannot run on ``problem`` (what the threat model or the model
        lacks), or None when it can."""
        return None

    @abstractmethod
    def counts(self, problem: LabelProblem) -> torch.Tensor:
        """Non-negative integer counts per class (K,), summing to ``problem.num_images``."""


REGISTRY: Registry[type[LabelMethod]] = Registry("label method")
register = REGISTRY.register
available = REGISTRY.available


def sign_scores(problem: LabelProblem) -> torch.Tensor:
    """Per class, a score that is negative for the classes in the batch.

    With softmax cross-entropy the gradient w.r.t. the logits is p - y, negative only at true
    labels. The bias gradient is exactly its batch mean; without a bias, the weight row sums
    keep the sign when the features are non-negative (ReLU, sigmoid). A FedAvg delta points
    the other way (theta_K - theta_0 ~ -lr * gradient).
    """
    layer = problem.classifier
    scores = layer.bias_update if layer.bias_update is not None else layer.weight_update.sum(1)
    return scores if problem.observation.kind == "fedsgd" else -scores


def scale_missing(problem: LabelProblem) -> str | None:
    """Why the update cannot be read as a mean gradient (``mean_gradient``), or None."""
    if problem.observation.kind == "fedavg" and problem.observation.fedavg is None:
        return ("needs the client's local learning rate, batch size and epochs to read a "
                "FedAvg update, and this threat model withholds them; choose --label-method "
                "count, idlg or yin")
    return None


def bias_missing(problem: LabelProblem) -> str | None:
    """Why a method that needs the classifier's bias cannot run, or None."""
    if problem.classifier.bias_update is None:
        return (f"needs the update of the classifier's bias ({problem.classifier.name}.bias), "
                "and this model's last layer has none; choose --label-method llg, count, "
                "idlg or yin")
    return None


def mean_gradient(problem: LabelProblem, update: torch.Tensor) -> torch.Tensor:
    """The classifier update as the mean gradient of one local step: FedSGD's gradient as it
    is; a FedAvg delta theta_K - theta_0 = -lr * (sum of the K steps' gradients) divided by
    -lr * K (needs the declared recipe, see ``scale_missing``)."""
    if problem.observation.kind == "fedsgd":
        return update
    return -update / (problem.observation.fedavg.lr * problem.local_steps)


# How far an estimate's sum may exceed the batch before it is scaled down instead of rounded
# and trimmed image by image (which keeps the trimming's choices for any realistic estimate).
FAR_TOO_MANY = 100


def integer_counts(estimate: torch.Tensor, total: int) -> torch.Tensor:
    """The non-negative integer counts summing to ``total`` closest to a real ``estimate``:
    negative entries count as zero (scaled up to ``total`` when the rest falls short, so no
    image goes to a class estimated absent), round, then add (remove) one image at a time
    where the estimate exceeds (falls short of) the count most. A NaN counts as zero, and an
    estimate summing to far more than ``total`` (an ill-conditioned solve: a trained model's
    near-zero bias update) is scaled down to ``total``, so the loop never counts down one
    image at a time from 1e15."""
    target = estimate.double().nan_to_num(nan=0.0, posinf=1e300, neginf=0.0).clamp(min=0)
    if 0 < target.sum() < total or target.sum() > FAR_TOO_MANY * total:
        target = target * (total / target.sum())
    counts = target.round().long()
    while int(counts.sum()) < total:
        counts[int((target - counts).argmax())] += 1
    while int(counts.sum()) > total:
        excess = (target - counts).masked_fill(counts == 0, math.inf)
        counts[int(excess.argmin())] -= 1
    return counts


def counts_to_labels(counts: torch.Tensor) -> torch.Tensor:
    """One label per image, sorted: class c repeated counts[c] times."""
    return torch.repeat_interleave(torch.arange(len(counts)), counts.long())


def present_classes(problem: LabelProblem) -> int:
    """How many classes an unperturbed update proves present: a class's bias gradient is a
    batch mean of p - y, negative only when some image has that label (the same holds for
    FedAvg's sum of local steps, with the sign flipped)."""
    if problem.classifier.bias_update is None:
        return 0
    return int((sign_scores(problem) < 0).sum())


def proven_present(problem: LabelProblem) -> torch.Tensor:
    """(K,) bool: the classes the update shows in the batch. Besides a negative bias
    gradient (``present_classes``), a negative entry anywhere in a class's weight-row
    gradient: for a class without images the row is a mean of p * h, never negative when the
    features h are (ReLU, sigmoid: every gradinv model), whereas an image of the class
    subtracts its own features (Yin et al.'s observation, used as a test). A class with few
    images whose features the others' outweigh everywhere can be missed."""
    layer = problem.classifier
    sign = 1 if problem.observation.kind == "fedsgd" else -1
    shown = (sign * layer.weight_update).amin(1) < 0
    return shown if layer.bias_update is None else shown | (sign * layer.bias_update < 0)


def check_num_images(problem: LabelProblem) -> None:
    """One clear line for a count the update cannot explain. The sign proof assumes the
    update was not perturbed: it is skipped when the server knows of a defense."""
    n = problem.num_images
    if not isinstance(n, int) or n < 1:
        raise GradinvError(f"label inference needs at least one image, not {n!r}")
    if problem.observation.defenses:
        return
    shown = present_classes(problem)
    if shown > n:
        raise GradinvError(
            f"the update cannot come from {n} images: its classifier bias shows {shown} "
            "classes in the batch (an unperturbed update's bias entry is negative only for a "
            "class in the batch); check the batch size, or tell the attacker about a noise "
            "defense (--defense-known)")


def estimate_num_images(model: nn.Module, observation: Observation) -> int:
    """When the count is withheld: the number of classes with a negative score (at least 1).
    A lower bound: repeated labels are not seen."""
    problem = LabelProblem(model, observation, 1, (1, 1, 1))
    return max(int((sign_scores(problem) < 0).sum()), 1)


# --label-method's default: the first of these methods the problem allows, best measured first
# (benchmarks/labels.py, benchmarks/RESULTS.md); the counting rule needs nothing, so it always can.
AUTO = "auto"
AUTO_ORDER = ("rlu", "count")


def method_choices() -> tuple[str, ...]:
    """What --label-method accepts: 'auto' and every registered method."""
    return (AUTO, *sorted(REGISTRY.classes))


def choose(name: str, problem: LabelProblem) -> LabelMethod:
    """The method ``name`` (or, for 'auto', the best one ``problem`` allows); a method that
    cannot run on ``problem`` says why in one line."""
    if name == AUTO:
        name = next(n for n in AUTO_ORDER if REGISTRY.get(n)().unavailable(problem) is None)
    method = REGISTRY.get(name)()
    reason = method.unavailable(problem)
    if reason is not None:
        raise GradinvError(f"label method {name!r} {reason}")
    return method


@dataclass(frozen=True)
class InferredLabels:
    """One label per image (sorted) and the method that inferred them."""

    labels: torch.Tensor
    method: str


def infer_labels(model: nn.Module, observation: Observation, num_images: int, *,
                 image_shape: tuple[int, int, int], method: str = AUTO) -> InferredLabels:
    """The labels of the ``num_images`` images behind ``observation``, by ``method``."""
    problem = LabelProblem(model, observation, num_images, tuple(image_shape))
    check_num_images(problem)
    chosen = choose(method, problem)
    counts = chosen.counts(problem)
    return InferredLabels(counts_to_labels(counts), chosen.name)
