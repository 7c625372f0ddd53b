"""The audit wing: one module per thing audited. ``batch``: a fresh client batch (``gradinv
attack``); ``update``: one recorded update (``attack --record``); ``record``: a whole record
(``gradinv audit``); ``sweep``: a grid of audits (and ``sweep_report``, its report). ``engine``
holds what they share (build, run and score attacks, write a run); ``config`` the device, the
prior, ``--set`` and TOML."""
from .batch import AuditConfig, RunOutcome, audit, run_audit, run_config
from .config import PriorSpec, resolve_device
from .engine import AuditResult, Outcome, evaluate

__all__ = ["AuditConfig", "AuditResult", "Outcome", "PriorSpec", "RunOutcome", "audit",
           "evaluate", "resolve_device", "run_audit", "run_config"]
