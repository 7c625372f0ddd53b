"""Attack one update of a federation record, the way the server could at that round.

The attack gets the record's architecture and the observation (with that round's broadcast
weights); the client's private batch, when the record keeps it, is read separately and used
only to score the reconstruction.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .audit import (AuditResult, PriorSpec, attack_arguments, build_attacks,
                    check_attack_settings, check_bn_prior, resolve_device, run_attacks,
                    run_settings, write_report)
from .files import check_writable
from .fl.private import load_private_batch
from .fl.record import open_record
from .settings import save_config


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


def run_record_audit(config: RecordAuditConfig, *, out: str | Path | None = "runs",
                     progress: bool = True) -> AuditResult:
    """Attack client ``config.client``'s update of round ``config.round``; scores are None
    when the record holds no private batch for it."""
    device = resolve_device(config.device)
    if out is not None:
        check_writable(out)
    arguments = attack_arguments(config.attack, config.hyperparameters, config.attack_settings)
    chosen = build_attacks(config.attack, config.hyperparameters, config.prior,
                           config.attack_settings)
    record = open_record(config.record)
    model = record.build_model()
    check_bn_prior(arguments, record.meta.threat, model)
    observation = record.observation(config.round, config.client)
    truth = load_private_batch(config.record, config.round, config.client)
    spec = record.meta.model
    outcomes = run_attacks(chosen, model, observation, truth,
                           image_shape=(spec.channels, spec.image_size, spec.image_size),
                           data_channels=record.meta.data_channels,
                           num_classes=spec.num_classes, seed=config.seed, device=device,
                           progress=progress)
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
