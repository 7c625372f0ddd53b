"""What the rest of gradinv reads off a model's structure (label inference and Soteria both need
its classifier layer; the BatchNorm prior needs BatchNorm layers)."""
from __future__ import annotations

from torch import nn

from ..checks import GradinvError


def last_layer(model: nn.Module) -> str:
    """Name of the final linear layer (the classifier)."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise GradinvError("label inference needs a model whose last layer is nn.Linear")
    return names[-1]


def has_batch_norm(model: nn.Module) -> bool:
    """Whether ``model`` has BatchNorm layers (whose statistics a client may leak)."""
    return any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
