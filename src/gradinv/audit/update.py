"""Attack one update of a federation record, the way the server could at that round.

The attack gets the record's model and the observation (with that round's broadcast weights);
the client's private batch, when the record keeps it, is read separately and used only to score
the reconstruction. A record of a gradinv architecture builds its model; one of the user's own
model is attacked with the module the user builds (``model_factory``, or ``model=`` in Python),
converted by ``adapt_model`` and checked against the record's description.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Union

import torch
from torch import nn

from ..attacks import Attack
from ..checks import GradinvError
from ..files import check_writable
from ..models import adapt_model
from ..record.format import Record, open_record
from ..record.model import ModelSpec, describe_module, first_difference
from ..record.private import load_private_batch
from ..types import PrivateBatch
from ..user_code import user_module
from .backends import Terminated
from .config import PriorSpec, resolve_device, save_config
from .engine import (AuditResult, Outcome, attack_arguments, build_attacks,
                     check_attack_settings, check_bn_prior, interrupted, run_attacks_many,
                     run_settings, write_report)


@dataclass(frozen=True)
class RecordAttackConfig:
    """What attacking a record takes, shared by one update's attack (``RecordAuditConfig``)
    and the whole record's audit (``audit.record.LeakageAuditConfig``): the record, the
    attacks with their settings and prior, the user's model factory, the seed and device."""

    record: str
    attack: str = "gi"
    hyperparameters: dict = field(default_factory=dict)
    attack_settings: dict[str, dict] = field(default_factory=dict)
    prior: PriorSpec | None = None
    model_factory: str | None = None
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        check_attack_settings(self)
        check_model_factory(self.model_factory)


@dataclass(frozen=True)
class RecordAuditConfig(RecordAttackConfig):
    """Which recorded update to attack, and with what; saved in the run folder."""

    round: int = field(kw_only=True)
    client: int = field(kw_only=True)


# The user's own client model: a module, or a factory (callable or import path) building one.
UserModel = Union[nn.Module, Callable[[], nn.Module], str]


def prepare_record_attacks(config: RecordAttackConfig, out: str | Path | None,
                           model: UserModel | None = None
                           ) -> tuple[torch.device, dict[str, Attack], Record, nn.Module]:
    """Everything attacking a record needs, checked before any attack runs: the device, a
    writable ``out``, the attacks, the record, and the model (``model``, else
    ``config.model_factory``, else the recorded architecture)."""
    check_config(config)
    device = resolve_device(config.device)
    if out is not None:
        check_writable(out)
    arguments = attack_arguments(config.attack, config.hyperparameters, config.attack_settings)
    chosen = build_attacks(arguments, config.prior)
    record = open_record(config.record)
    given = model if model is not None else config.model_factory
    model = record.build_model() if given is None else user_model(given, record)
    check_bn_prior(arguments, record.meta.threat, model)
    return device, chosen, record, model


def check_config(config: object) -> None:
    if not isinstance(config, RecordAttackConfig):
        raise GradinvError(f"config must be a RecordAuditConfig or LeakageAuditConfig, not "
                           f"{type(config).__name__}")


def check_model_factory(factory: object) -> None:
    """A config's ``model_factory``: None or ``package.module:factory`` text."""
    if factory is not None and (not isinstance(factory, str) or ":" not in factory):
        raise GradinvError(f"model_factory must be package.module:factory, not {factory!r}")


def user_model(given: UserModel, record: Record) -> nn.Module:
    """The user's module (built by the factory when one is given), its torch BatchNorm layers
    converted, checked to have the recorded model's state."""
    module = adapt_model(user_module(given, "model", "an nn.Module, a factory or "
                                     "package.module:factory"))
    check_model_fits(module, record)
    return module


def check_model_fits(model: nn.Module, record: Record) -> None:
    """A model given for the attack must have the recorded model's state: the same names and
    shapes, and the same entries as parameters."""
    want = record.description
    got = describe_module(model, name=type(model).__name__, source=None,
                          channels=want.channels, num_classes=want.num_classes,
                          image_size=want.image_size)
    problem = first_difference(want.shapes(), got.shapes(), "the given model")
    ours, theirs = set(want.parameter_names()), set(got.parameter_names())
    if problem is None and ours != theirs:
        name = min(ours ^ theirs)
        role = "a parameter" if name in ours else "a buffer"
        problem = f"{name} is {role} of the record's model but not of the given model"
    if problem is not None:
        named = record.meta.model
        hint = (f" (the record names gradinv's {named.name}, which needs no model: drop "
                "--model-factory)" if isinstance(named, ModelSpec) else "")
        raise GradinvError(f"the given model does not fit the record {record.path}: "
                           f"{problem}{hint}")


def run_record_audit(config: RecordAuditConfig, *, out: str | Path | None = "runs",
                     progress: bool = True, model: UserModel | None = None) -> AuditResult:
    """Attack client ``config.client``'s update of round ``config.round``; scores are None
    when the record holds no private batch for it. ``model``: the user's own client model (or
    its factory), for a record of it. Interrupted during a later attack, it writes the
    attacks that ended (``gradinv attack`` keeps them)."""
    check_config(config)
    return run_round_audit(config, config.round, [config.client], out=out, progress=progress,
                           model=model, keep_interrupted=True)[0]


def run_round_audit(config: RecordAttackConfig, round: int, clients: Sequence[int], *,
                    out: str | Path | None = "runs", progress: bool = True,
                    model: UserModel | None = None,
                    keep_interrupted: bool = False) -> list[AuditResult]:
    """Attack the updates of ``clients`` in round ``round``, all at once (the attacks that can
    match them in one batched pass do: they share the round's broadcast weights); one result
    and one run folder per client, as ``run_record_audit`` writes for each.
    ``keep_interrupted``: stopped during a later attack, write the attacks that ended (not
    for an audit's units, which are whole or redone)."""
    device, chosen, record, model = prepare_record_attacks(config, out, model)
    observations = [record.observation(round, c) for c in clients]
    truths = [load_private_batch(config.record, round, c) for c in clients]
    spec = record.meta.model
    finished: list[list[dict[str, Outcome]]] = []
    try:
        found = run_attacks_many(
            chosen, model, observations, truths,
            image_shape=(spec.channels, spec.image_size, spec.image_size),
            data_channels=record.meta.data_channels, num_classes=spec.num_classes,
            seed=config.seed, device=device, progress=progress,
            after_each=lambda outcomes: finished.append([dict(o) for o in outcomes]))
    except (KeyboardInterrupt, Terminated):
        if keep_interrupted and finished and out is not None:
            not_run, note = interrupted(list(chosen), list(finished[-1][0]))
            for result in _write_round(config, round, clients, truths, finished[-1], chosen,
                                       record, device, out, {"not_run": not_run}, note):
                print(f"interrupted: kept {', '.join(result.outcomes)} in "
                      f"{result.folder / 'report.html'}")  # type: ignore[operator]
        raise
    return _write_round(config, round, clients, truths, found, chosen, record, device, out)


def _write_round(config: RecordAttackConfig, round: int, clients: Sequence[int],
                 truths: Sequence[PrivateBatch | None], found: list[dict[str, Outcome]],
                 chosen: dict[str, Attack], record: Record, device: torch.device,
                 out: str | Path | None, extra: dict | None = None, note: str = ""
                 ) -> list[AuditResult]:
    """One result per client, each with its run folder under ``out`` (unless None);
    ``extra`` joins config.json, ``note`` ends the title."""
    spec = record.meta.model
    base = {f.name: getattr(config, f.name) for f in fields(RecordAttackConfig)}
    results = []
    for client, truth, outcomes in zip(clients, truths, found):
        folder = None
        if out is not None:
            one = RecordAuditConfig(**base, round=round, client=client)
            ran = {name: chosen[name] for name in outcomes}
            name = f"{'-'.join(outcomes)}-{spec.name}-round{round}-client{client}"
            folder = write_report(out, name, config={**run_settings(one, ran, outcomes, device),
                                                     "record_meta": record.meta.to_json(),
                                                     **(extra or {})},
                                  truth=truth, outcomes=outcomes,
                                  title=f"gradinv: {', '.join(outcomes)} on round {round}, "
                                        f"client {client} of {config.record}{note}")
            save_config(one, folder / "config.toml")
        results.append(AuditResult(outcomes, None if truth is None else truth.images, folder))
    return results
