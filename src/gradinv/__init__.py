"""gradinv: audit the privacy of federated learning with gradient inversion attacks."""
from .audit import AuditConfig, AuditResult, audit, run_audit
from .checks import GradinvError
from .types import (ClientUpdate, FedAvgConfig, Observation, PrivateBatch, Reconstruction,
                    ThreatModel)
from .version import __version__

__all__ = ["AuditConfig", "AuditResult", "ClientUpdate", "FedAvgConfig", "GradinvError",
           "Observation", "PrivateBatch", "Reconstruction", "ThreatModel", "__version__", "audit",
           "run_audit"]
