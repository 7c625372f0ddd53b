"""A fresh client batch (``gradinv attack``): data -> client update -> observation -> attacks
-> scores -> run folder, in one call."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..checks import MAX_COUNT, GradinvError, check_bool, check_int
from ..data import ImageDataset, load_dataset, private_batch, resolve_split
from ..defenses import DefensePipeline
from ..files import check_writable
from ..fl import compute_update, observe
from ..fl.client import check_threat_fits
from ..fl.victim import VictimConfig
from ..models import build_model
from ..types import DefenseSpec, FedAvgConfig, PrivateBatch, ThreatModel, UpdateKind, resolve_fedavg
from .backends import Terminated
from .config import PriorSpec, resolve_device, save_config
from .engine import (AuditResult, Outcome, attack_arguments, attack_names, build_attacks,
                     check_attack_settings, check_bn_prior, did_you_mean, every_attack_setting,
                     interrupted, run_attacks, run_settings, write_report)


@dataclass(frozen=True)
class AuditConfig(VictimConfig):
    """Everything that defines one audit run; saved verbatim in the run folder (config.json,
    and config.toml, which ``--config`` reads back).

    ``hyperparameters`` go to every chosen attack that takes them, ``attack_settings`` to one
    attack by name (``{"gias": {"lr": 1e-4}}``; see ``attack_arguments``). ``seed`` seeds both
    the victim model's initialisation and the attack unless ``model_seed`` / ``attack_seed``
    say otherwise; both are stored resolved.

    ``defenses``: what the client applies to its update, in order, each a ``DefenseSpec``, a
    ``"name:key=value,..."`` string or a ``(name, settings)`` pair; stored as specs with every
    setting as it runs (defaults included).
    """

    attack: str = "gi"
    split: str | None = None  # None: 'test' for a dataset with splits
    batch_size: int = 1
    offset: int = 0
    distinct_labels: bool = True
    update: UpdateKind = "fedsgd"
    fedavg: FedAvgConfig | None = None  # None: the default recipe for FedAvg
    threat: ThreatModel = field(default_factory=ThreatModel)
    defenses: tuple[DefenseSpec, ...] = ()
    hyperparameters: dict = field(default_factory=dict)
    attack_settings: dict[str, dict] = field(default_factory=dict)
    prior: PriorSpec | None = None
    seed: int = 0
    model_seed: int | None = None  # None: ``seed``
    attack_seed: int | None = None  # None: ``seed``
    device: str = "auto"

    def __post_init__(self) -> None:
        if not isinstance(self.threat, ThreatModel):
            raise GradinvError(f"threat must be a ThreatModel, not {type(self.threat).__name__}")
        check_attack_settings(self)
        super().__post_init__()
        for name in ("batch_size", "offset"):
            check_int(name, getattr(self, name), low=1 if name == "batch_size" else 0,
                      high=MAX_COUNT)
        check_bool("distinct_labels", self.distinct_labels)
        object.__setattr__(self, "split", resolve_split(self.dataset, self.split))
        object.__setattr__(self, "fedavg", resolve_fedavg(self.update, self.fedavg, self.threat))
        object.__setattr__(self, "defenses",
                           DefensePipeline.for_client(self.defenses, self.threat).specs)


@dataclass(frozen=True)
class RunOutcome:
    """What one configuration produced, before anything is written: every attack's outcome,
    the client's batch (the ground truth) and the settings as they ran (config.json's
    content). Sweeps and benchmarks keep it in memory; ``run_audit`` writes it."""

    config: AuditConfig
    outcomes: dict[str, Outcome]
    truth: PrivateBatch
    settings: dict


def _check_is_config(config: object) -> None:
    """A dict or a keyword list is not a config: say so, not AttributeError on a field."""
    if not isinstance(config, AuditConfig):
        raise GradinvError(f"config must be an AuditConfig (gradinv.audit.AuditConfig), not "
                           f"{type(config).__name__}")


def run_config(config: AuditConfig, *, progress: bool = False, model: nn.Module | None = None,
               data: ImageDataset | None = None, device: torch.device | None = None,
               after_each: Callable[[RunOutcome], None] | None = None) -> RunOutcome:
    """Run one configuration and return its outcome; writes nothing. ``model`` replaces the
    victim built from the config, ``data`` the dataset it names (a benchmark's own images);
    ``device``: ``config.device`` already resolved (``resolve_device``); ``after_each``: called
    with the outcome so far as each attack ends."""
    _check_is_config(config)
    device = resolve_device(config.device) if device is None else device
    arguments = attack_arguments(config.attack, config.hyperparameters, config.attack_settings)
    chosen = build_attacks(arguments, config.prior)
    if data is None:
        data = load_dataset(config.dataset, data_dir=config.data_dir, split=config.split,
                            image_size=config.image_size)
    batch = private_batch(data, config.batch_size, size=config.image_size,
                          channels=config.channels, offset=config.offset,
                          distinct_labels=config.distinct_labels)
    if model is None:
        model = build_model(config.model, channels=config.channels,
                            num_classes=data.num_classes, image_size=config.image_size,
                            width=config.width, seed=config.model_seed,
                            init_scheme=config.init_scheme)
    check_bn_prior(arguments, config.threat, model)
    check_threat_fits(config.threat, model)
    pipeline = DefensePipeline.from_specs(config.defenses)
    update = compute_update(model, batch, kind=config.update, fedavg=config.fedavg,
                            mode=config.threat.model_mode, defenses=pipeline, seed=config.seed)
    observation = observe(update, config.threat)

    def outcome(outcomes: dict[str, Outcome]) -> RunOutcome:
        ran = {name: chosen[name] for name in outcomes}
        return RunOutcome(config, dict(outcomes), batch, run_settings(
            config, ran, outcomes, device, defenses_derived=pipeline.derived))

    return outcome(run_attacks(
        chosen, model, observation, batch, image_shape=tuple(batch.images.shape[1:]),
        data_channels=data.channels, num_classes=data.num_classes, seed=config.attack_seed,
        device=device, progress=progress,
        after_each=None if after_each is None else lambda done: after_each(outcome(done))))


def run_audit(config: AuditConfig, *, out: str | Path | None = "runs", progress: bool = True,
              model: nn.Module | None = None, name: str | None = None) -> AuditResult:
    """``run_config``, then a run folder under ``out`` (unless ``out`` is None) holding the
    report and config.toml, from which ``gradinv attack --config`` repeats the run. ``name``:
    the folder's name after its timestamp (default: attacks, model, dataset and defenses)."""
    _check_is_config(config)
    device = resolve_device(config.device)
    if out is not None:
        check_writable(out)
    finished: list[RunOutcome] = []
    try:
        run = run_config(config, progress=progress, model=model, device=device,
                         after_each=finished.append)
    except (KeyboardInterrupt, Terminated):
        if finished and out is not None:  # the attacks that ended before it are kept
            _keep_interrupted(out, finished[-1], name)
        raise
    folder = None if out is None else _write(out, run, name)
    return AuditResult(run.outcomes, run.truth.images, folder)


# The words (the command line's) that name a threat model's departures from ThreatModel().
THREAT_WORDS = {"labels_known": "unknown-labels", "num_images_known": "unknown-count",
                "bn_stats_known": "bn-stats", "local_hparams_known": "unknown-hparams",
                "defense_known": "defense-known"}


def _departures(config: AuditConfig) -> list[str]:
    """How the run's update and threat model depart from the defaults (FedSGD, ThreatModel()),
    in words, so that runs of one batch under other threat models are told apart by name."""
    default = ThreatModel()
    words = ["fedavg"] if config.update == "fedavg" else []
    words += [word for field, word in THREAT_WORDS.items()
              if getattr(config.threat, field) != getattr(default, field)]
    if config.threat.model_mode != default.model_mode:
        words.append(f"{config.threat.model_mode}-mode")
    return words


def _write(out: str | Path, run: RunOutcome, name: str | None, note: str = "") -> Path:
    """``run``'s folder under ``out`` (report, config.json and config.toml); its name and
    title say which attacks ran and which defenses the client applied."""
    config = run.config
    defended = [spec.name for spec in config.defenses]
    setting = _departures(config)
    name = name or "-".join([*run.outcomes, config.model, config.dataset, *setting, *defended])
    title = f"gradinv: {', '.join(run.outcomes)} on {config.model}" + (
        f" ({', '.join(setting)})" if setting else "") + (
        f", defended by {', '.join(map(str, config.defenses))}" if defended else "")
    folder = write_report(out, name, config=run.settings, truth=run.truth,
                          outcomes=run.outcomes, title=title + note)
    save_config(config, folder / "config.toml")
    return folder


def _keep_interrupted(out: str | Path, run: RunOutcome, name: str | None) -> None:
    """The folder of a run stopped part-way: the attacks that ended, and which did not run
    (config.json's ``not_run``); its config.toml repeats the whole run."""
    run.settings["not_run"], note = interrupted(attack_names(run.config.attack),
                                                list(run.outcomes))
    folder = _write(out, run, name, note)
    print(f"interrupted: kept {', '.join(run.outcomes)} in {folder / 'report.html'}")


def _refuse_unknown_keywords(keywords: dict, names: list[str]) -> None:
    """A keyword that is neither a run setting (``names``) nor any attack's: a typo such as
    ``modle="lenet"`` is named with the closest setting, not blamed on the chosen attacks."""
    taken = set(names) | every_attack_setting()
    for key in keywords:
        if key not in taken:
            raise GradinvError(f"audit() takes no setting {key!r}{did_you_mean(key, taken)}")


def audit(*, out: str | Path | None = "runs", progress: bool = True, **settings: object) -> AuditResult:
    """Keyword front door: settings named like ``AuditConfig`` fields; others go to the attack.

    Example: ``audit(attack="gi", model="lenet", batch_size=1, iterations=300)``.
    """
    fields = AuditConfig.__dataclass_fields__
    config = {k: v for k, v in settings.items() if k in fields}
    hyper = {k: v for k, v in settings.items() if k not in fields}
    _refuse_unknown_keywords(hyper, [*fields, "out", "progress"])
    if not isinstance(config.get("hyperparameters", {}), dict):
        raise GradinvError("hyperparameters must be a dict of attack settings, not "
                           f"{type(config['hyperparameters']).__name__}")
    config["hyperparameters"] = {**config.get("hyperparameters", {}), **hyper}  # type: ignore[dict-item]
    return run_audit(AuditConfig(**config), out=out, progress=progress)  # type: ignore[arg-type]
