"""Federated-learning client updates (FedSGD, FedAvg) and what the server observes of them."""
from .client import compute_update, observe
from .functional import FunctionalModel, cross_entropy

__all__ = ["FunctionalModel", "compute_update", "cross_entropy", "observe"]
