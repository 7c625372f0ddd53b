"""Gradient inversion attacks, one paper per file, all reachable through a small registry."""
from . import dlg, gi, gi_z, gias, idlg  # noqa: F401  (importing registers them)
from .base import (Attack, accepted_hyperparameters, available, create, effective_settings,
                   prepare_target, register)
from .labels import infer_labels

__all__ = ["Attack", "accepted_hyperparameters", "available", "create", "effective_settings",
           "infer_labels", "prepare_target", "register"]
