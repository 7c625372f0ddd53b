"""Make real client models attackable: swap layers that do not vmap for gradinv's own.

Client models in the wild use ``torch.nn.BatchNorm2d``; gradient inversion needs a BatchNorm
whose eval mode is an affine map and whose train mode never updates running statistics inside
``vmap`` (``layers.BatchNorm2d``). ``adapt_model`` converts every ``torch.nn.BatchNorm2d``,
keeping its weight, bias, running statistics, ``num_batches_tracked``, ``eps`` and
``momentum``, so the state dict keys and values are unchanged. Layers it cannot convert
(BatchNorm1d/3d, SyncBatchNorm, BatchNorm without affine parameters or running statistics)
raise one ``GradinvError`` naming the layer. Norms without running statistics (GroupNorm,
LayerNorm, InstanceNorm without tracked statistics) vmap as they are and are kept.
"""
from __future__ import annotations

import copy

from torch import nn

from ..checks import GradinvError
from .layers import BatchNorm2d


def _convert(name: str, m: nn.BatchNorm2d) -> BatchNorm2d:
    if not m.affine or not m.track_running_stats:
        missing = "affine weight and bias" if not m.affine else "running statistics"
        raise GradinvError(f"layer {name!r} ({type(m).__name__}) has no {missing}; gradinv can "
                           "attack BatchNorm2d with affine=True and track_running_stats=True")
    new = BatchNorm2d(m.num_features, eps=m.eps, momentum=m.momentum,
                      device=m.weight.device, dtype=m.weight.dtype)
    new.load_state_dict(m.state_dict())
    new.train(m.training)
    return new


def unsupported_layers(model: nn.Module) -> list[str]:
    """'name (Type)' of every layer of ``model`` that ``adapt_model`` cannot convert."""
    bad = []
    for name, m in model.named_modules():
        if isinstance(m, BatchNorm2d):
            continue
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and (
                type(m) is not nn.BatchNorm2d or not m.affine or not m.track_running_stats):
            bad.append(f"{name or '<model>'} ({type(m).__name__})")
    return bad


def adapt_model(model: nn.Module, *, copy_model: bool = True) -> nn.Module:
    """``model`` (a deep copy by default) with every ``torch.nn.BatchNorm2d`` replaced by
    ``gradinv.models.BatchNorm2d`` holding the same parameters and buffers; a model needing
    no change is returned as is (copied). Raises ``GradinvError`` for layers that cannot be
    attacked (see the module docstring)."""
    bad = unsupported_layers(model)
    if bad:
        raise GradinvError("gradinv cannot attack this model: " + ", ".join(bad) + " cannot be "
                           "converted (supported: torch.nn.BatchNorm2d with affine parameters "
                           "and running statistics; GroupNorm, LayerNorm, InstanceNorm without "
                           "running statistics)")
    out = copy.deepcopy(model) if copy_model else model
    if isinstance(out, nn.BatchNorm2d) and not isinstance(out, BatchNorm2d):
        return _convert("<model>", out)
    for name, parent in list(out.named_modules()):
        for child_name, child in list(parent.named_children()):
            if type(child) is nn.BatchNorm2d:
                full = f"{name}.{child_name}" if name else child_name
                setattr(parent, child_name, _convert(full, child))
    return out
