"""Attack one update of a federation record, the way the server could at that round.

The attack gets the record's architecture and the observation (with that round's broadcast
weights); the client's private batch, when the record keeps it, is read separately and used
only to score the reconstruction.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from .attacks import Attack
from .audit import (AuditResult, Outcome, PriorSpec, attack_arguments, build_attacks,
                    check_attack_settings, check_bn_prior, resolve_device, run_attacks,
                    run_settings, write_report)
from .files import check_writable
from .fl.private import load_private_batch
from .fl.record import Record, open_record
from .settings import save_config
from .types import GradinvError, Observation, PrivateBatch


@dataclass(frozen=True)
class RecordAuditConfig:
    """Which recorded update to attack, and with what; saved in the run folder."""

    record: str
    round: int
    client: int
    attack: str = "gi"
    hyperparameters: dict = field(default_factory=dict)
    attack_settings: dict[str, dict] = field(default_factory=dict)
    prior: PriorSpec | None = None
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        check_attack_settings(self)


class RecordAttackConfig(Protocol):
    """What RecordAuditConfig and LeakageAuditConfig share: a record and the attacks on it."""

    record: str
    attack: str
    hyperparameters: dict
    attack_settings: dict[str, dict]
    prior: PriorSpec | None
    device: str


def prepare_record_attacks(config: RecordAttackConfig, out: str | Path | None,
                           model: nn.Module | None = None
                           ) -> tuple[torch.device, dict[str, Attack], Record, nn.Module]:
    """Everything attacking a record needs, checked before any attack runs: the device, a
    writable ``out``, the attacks, the record, and the model (the recorded architecture, or the
    user's own, which must fit it)."""
    device = resolve_device(config.device)
    if out is not None:
        check_writable(out)
    arguments = attack_arguments(config.attack, config.hyperparameters, config.attack_settings)
    chosen = build_attacks(arguments, config.prior)
    record = open_record(config.record)
    if model is None:
        model = record.build_model()
    else:
        check_model_fits(model, record)
    check_bn_prior(arguments, record.meta.threat, model)
    return device, chosen, record, model


def check_model_fits(model: nn.Module, record: Record) -> None:
    """A model given for the audit must have the recorded architecture's state."""
    want = {k: tuple(v.shape) for k, v in record.build_model().state_dict().items()}
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if want != got:
        diff = sorted(set(want) ^ set(got)) or sorted(k for k in want if want[k] != got[k])
        raise GradinvError(f"the model given does not match the architecture of {record.path} "
                           f"({record.meta.model.name}; first difference: {diff[0]})")


def attack_recorded(chosen: dict[str, Attack], model: nn.Module, record: Record,
                    observation: Observation, truth: PrivateBatch | None, *, seed: int,
                    device: torch.device, progress: bool) -> dict[str, Outcome]:
    """``run_attacks`` with the image shape, data channels and classes the record declares."""
    spec = record.meta.model
    return run_attacks(chosen, model, observation, truth,
                       image_shape=(spec.channels, spec.image_size, spec.image_size),
                       data_channels=record.meta.data_channels, num_classes=spec.num_classes,
                       seed=seed, device=device, progress=progress)


def run_record_audit(config: RecordAuditConfig, *, out: str | Path | None = "runs",
                     progress: bool = True) -> AuditResult:
    """Attack client ``config.client``'s update of round ``config.round``; scores are None
    when the record holds no private batch for it."""
    device, chosen, record, model = prepare_record_attacks(config, out)
    observation = record.observation(config.round, config.client)
    truth = load_private_batch(config.record, config.round, config.client)
    outcomes = attack_recorded(chosen, model, record, observation, truth, seed=config.seed,
                               device=device, progress=progress)
    spec = record.meta.model
    folder = None
    if out is not None:
        name = f"{'-'.join(outcomes)}-{spec.name}-round{config.round}-client{config.client}"
        folder = write_report(out, name, config={**run_settings(config, chosen, device),
                                                 "record_meta": record.meta.to_json()},
                              truth=truth, outcomes=outcomes,
                              title=f"gradinv: {', '.join(outcomes)} on round {config.round}, "
                                    f"client {config.client} of {config.record}")
        save_config(config, folder / "config.toml")
    return AuditResult(outcomes, None if truth is None else truth.images, folder)
