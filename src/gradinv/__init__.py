"""gradinv: audit the privacy of federated learning with gradient inversion attacks."""
__version__ = "0.1.0"

from .audit import AuditConfig, AuditResult, audit, run_audit  # noqa: E402
from .types import (ClientUpdate, FedAvgConfig, GradinvError, Observation,  # noqa: E402
                    PrivateBatch, Reconstruction, ThreatModel)

__all__ = ["AuditConfig", "AuditResult", "ClientUpdate", "FedAvgConfig", "GradinvError",
           "Observation", "PrivateBatch", "Reconstruction", "ThreatModel", "audit", "run_audit"]
