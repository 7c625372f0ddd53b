"""Victim networks in plain ``torch.nn``, built by name with a seeded initialisation."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..checks import MAX_SIZE, GradinvError, check_int
from .adapt import adapt_model
from .convnet import ConvNet
from .init import INIT_SCHEMES, initialise
from .inspect import has_batch_norm, last_layer
from .layers import BatchNorm2d
from .lenet import LeNet
from .resnet import ResNet18

_BUILDERS: dict[str, Callable[[int, int, int, int], nn.Module]] = {
    "lenet": lambda c, k, size, width: LeNet(c, k, size),
    "convnet": lambda c, k, size, width: ConvNet(c, k, width),
    "resnet18": lambda c, k, size, width: ResNet18(c, k, width),
}
DEFAULT_WIDTH = {"lenet": 12, "convnet": 32, "resnet18": 64}
# LeNet keeps the DLG paper's init; the ReLU networks get the one people train them with.
DEFAULT_INIT = {"lenet": "dlg-uniform", "convnet": "kaiming-fan-out", "resnet18": "kaiming-fan-out"}


def default_init_scheme(name: str) -> str:
    """The init scheme ``build_model`` uses for ``name`` when none is given."""
    return DEFAULT_INIT[name]


def available_models() -> list[str]:
    return sorted(_BUILDERS)


def check_width(model: str, width: object) -> None:
    """``width`` for ``model``: None (the default) or a size; LeNet's is fixed, so a width given
    for it would be recorded but never used."""
    check_int("width", width, low=1, high=MAX_SIZE, optional=True)
    if width is not None and model == "lenet":
        raise GradinvError("LeNet has a fixed width (DLG's); drop --width")


def build_model(
    name: str,
    *,
    channels: int = 3,
    num_classes: int = 10,
    image_size: int = 32,
    width: int | None = None,
    seed: int = 0,
    init_scheme: str | None = None,
) -> nn.Module:
    """Build a victim model; the same seed and scheme always give the same initial weights.

    ``init_scheme`` (see ``INIT_SCHEMES``) defaults to ``default_init_scheme(name)``.
    """
    if name not in _BUILDERS:
        raise GradinvError(f"unknown model {name!r}; choose one of {', '.join(available_models())}")
    if image_size < 4 or channels < 1:
        raise GradinvError(f"a model needs image_size >= 4 and channels >= 1, not {image_size} "
                           f"and {channels}")
    if num_classes < 2:
        raise GradinvError(f"a classifier needs at least 2 classes, and the data has "
                           f"{num_classes} (an image folder has one sub-folder per class)")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _BUILDERS[name](channels, num_classes, image_size, width or DEFAULT_WIDTH[name])
        return initialise(model, init_scheme or default_init_scheme(name))


__all__ = ["INIT_SCHEMES", "BatchNorm2d", "adapt_model", "ConvNet", "LeNet", "ResNet18", "available_models",
           "build_model", "check_width", "default_init_scheme", "has_batch_norm", "initialise",
           "last_layer"]
