"""Federated-learning client updates (FedSGD, FedAvg), what the server observes of them, a
simulated federation and its on-disk record (private batches: ``gradinv.fl.private`` only)."""
from .client import compute_update, observe
from .federation import Federation, FederationConfig, simulate
from .functional import FunctionalModel, cross_entropy
from .record import Record, open_record
from .recorder import RecordWriter

__all__ = ["Federation", "FederationConfig", "FunctionalModel", "Record", "RecordWriter",
           "compute_update", "cross_entropy", "observe", "open_record", "simulate"]
