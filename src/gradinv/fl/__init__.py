"""Simulated federated learning: client updates (FedSGD, FedAvg), what the server observes of
them, and a federation of such clients. Its records are written in ``gradinv.record``'s format
(``Record``, ``RecordWriter`` and ``open_record`` are re-exported here for convenience)."""
from ..record import Record, RecordWriter, open_record
from .client import compute_update, observe
from .federation import Federation, FederationConfig, simulate
from .functional import FunctionalModel, cross_entropy

__all__ = ["Federation", "FederationConfig", "FunctionalModel", "Record", "RecordWriter",
           "compute_update", "cross_entropy", "observe", "open_record", "simulate"]
