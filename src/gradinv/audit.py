"""The whole audit in one call: data -> client update -> observation -> attack -> scores -> report."""
from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from . import attacks, defenses
from .checks import MAX_COUNT, MAX_SIZE, check_bool, check_choice, check_int
from .data import (DATASETS, ImageDataset, adapt_channels, load_dataset, private_batch,
                   resolve_split)
from .defenses import DefensePipeline
from .files import check_writable
from .fl import compute_update, observe
from .metrics import Scores, score
from .models import (INIT_SCHEMES, available_models, build_model, check_width,
                     default_init_scheme, has_batch_norm)
from .priors import load_prior
from .report import Row, new_run_dir, write_run
from .settings import save_config
from .types import (DefenseSpec, FedAvgConfig, GradinvError, Observation, PrivateBatch,
                    Reconstruction, ThreatModel, UpdateKind, resolve_fedavg)


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present; 'cpu', 'cuda' and 'cuda:N' name a device, and asking for
    a GPU that is not there is a user error. Other torch device types (meta, mps, ...) are
    refused: the attacks are written for CPU and CUDA only."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(name, str) or not re.fullmatch(r"cpu|cuda(:\d+)?", name):
        raise GradinvError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N")
    device = torch.device(name)
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device.type == "cuda" and not gpus:
        raise GradinvError(f"device {name!r} requested but no CUDA GPU is available; "
                           "use --device cpu or auto")
    if device.type == "cuda" and (device.index or 0) >= gpus:
        raise GradinvError(f"device {name!r} requested but there are only {gpus} CUDA GPUs")
    return device


@dataclass(frozen=True)
class PriorSpec:
    """Where an attack's generator comes from (see ``gradinv.priors.load_prior``)."""

    source: str = "fashion-mnist"
    weights: str | None = None
    latent_dim: int | None = None
    output_range: tuple[float, float] = (-1.0, 1.0)


@dataclass(frozen=True)
class AuditConfig:
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
    model: str = "lenet"
    width: int | None = None
    init_scheme: str | None = None
    dataset: str = "default"
    data_dir: str | None = None
    split: str | None = None  # None: 'test' for a dataset with splits
    batch_size: int = 1
    offset: int = 0
    distinct_labels: bool = True
    image_size: int = 32
    channels: int = 3
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
        check_choice("model", self.model, available_models())
        check_width(self.model, self.width)
        check_choice("dataset", self.dataset, DATASETS)
        for name, low, high in (("batch_size", 1, MAX_COUNT), ("offset", 0, MAX_COUNT),
                                ("image_size", 4, MAX_SIZE), ("channels", 1, MAX_SIZE)):
            check_int(name, getattr(self, name), low=low, high=high)
        check_bool("distinct_labels", self.distinct_labels)
        # Record what is actually used, not "default": the scheme changes how much leaks.
        if self.init_scheme is None:
            object.__setattr__(self, "init_scheme", default_init_scheme(self.model))
        check_choice("init_scheme", self.init_scheme, sorted(INIT_SCHEMES))
        object.__setattr__(self, "split", resolve_split(self.dataset, self.split))
        object.__setattr__(self, "fedavg", resolve_fedavg(self.update, self.fedavg, self.threat))
        object.__setattr__(self, "defenses",
                           DefensePipeline.for_client(self.defenses, self.threat).specs)


def check_attack_settings(config: object) -> None:
    """What every audit config shares: its seeds (unset ones resolved from ``seed``), its
    hyper-parameters (dicts) and its prior (a source name becomes a ``PriorSpec``, as in
    ``audit(prior="faces")``)."""
    for name in ("seed", "model_seed", "attack_seed"):
        if not hasattr(config, name):
            continue
        if getattr(config, name) is None:
            object.__setattr__(config, name, config.seed)  # type: ignore[attr-defined]
        check_int(name, getattr(config, name), low=0, high=2**63 - 1)
    hyper = config.hyperparameters  # type: ignore[attr-defined]
    if not isinstance(hyper, dict):
        raise GradinvError(f"hyperparameters must be a dict, not {type(hyper).__name__}")
    per_attack = config.attack_settings  # type: ignore[attr-defined]
    if not isinstance(per_attack, dict) or not all(isinstance(v, dict)
                                                   for v in per_attack.values()):
        raise GradinvError("attack_settings must be a dict of dicts, attack name -> settings")
    prior = config.prior  # type: ignore[attr-defined]
    if isinstance(prior, str):
        object.__setattr__(config, "prior", PriorSpec(prior))
    elif prior is not None and not isinstance(prior, PriorSpec):
        raise GradinvError(f"prior must be a source name or a PriorSpec, not "
                           f"{type(prior).__name__}")


def check_bn_prior(arguments: dict[str, dict], threat: ThreatModel, model: nn.Module) -> None:
    """The BatchNorm-statistics prior (--bn-prior) compares candidates' statistics with the
    client's: without leaked statistics or without BatchNorm layers it would weigh nothing.
    ``arguments``: each attack's given settings (``attack_arguments``)."""
    if not any("bn_stats" in given for given in arguments.values()):
        return
    if not threat.bn_stats_known:
        raise GradinvError("the BatchNorm-statistics prior needs the statistics, which this "
                           "threat model withholds; drop --bn-prior, or add --bn-stats (the "
                           "client leaks them) for a fresh batch")
    if not has_batch_norm(model):
        raise GradinvError(f"the BatchNorm-statistics prior needs BatchNorm layers, and the "
                           f"model ({type(model).__name__}) has no BatchNorm layers; drop "
                           "--bn-prior")


@dataclass(frozen=True)
class Outcome:
    """One attack's reconstruction and its scores against the ground truth (None when there
    is none, e.g. a recorded update whose private batch was not kept)."""

    reconstruction: Reconstruction
    scores: Scores | None
    seconds: float = 0.0  # the attack's wall-clock time


@dataclass(frozen=True)
class AuditResult:
    """Every attack of the run (in order), the ground truth (if known), and the run folder."""

    outcomes: dict[str, Outcome]
    truth: torch.Tensor | None
    folder: Path | None

    @property
    def reconstruction(self) -> Reconstruction:
        return next(iter(self.outcomes.values())).reconstruction

    @property
    def scores(self) -> Scores | None:
        return next(iter(self.outcomes.values())).scores


def evaluate(reconstruction: Reconstruction, truth_images: torch.Tensor, truth_labels: torch.Tensor,
             *, data_channels: int, num_classes: int) -> Scores:
    """Score in the data's own channels (a grey image replicated to RGB is scored as grey)."""
    return score(adapt_channels(reconstruction.images, data_channels),
                 adapt_channels(truth_images, data_channels),
                 predicted_labels=reconstruction.labels, true_labels=truth_labels,
                 num_classes=num_classes)


def attack_names(attack: str) -> list[str]:
    """``attack`` is one name or a comma-separated list compared on the same update."""
    names = [n.strip() for n in attack.split(",") if n.strip()]
    if not names or len(set(names)) != len(names):
        raise GradinvError(f"bad attack list {attack!r}")
    return names


# Flat settings shared by every chosen attack even where their defaults differ: the budget,
# so that attacks compared on one update spend the same number of steps.
SHARED_BUDGET = ("iterations", "restarts")


def attack_arguments(attack: str, hyperparameters: dict,
                     attack_settings: dict[str, dict]) -> dict[str, dict]:
    """Each chosen attack's given settings: its own ``attack_settings`` entry over the flat
    ``hyperparameters`` it takes. A flat setting that no attack takes is refused, and so is one
    (other than the budget, ``SHARED_BUDGET``) that several chosen attacks take with different
    defaults and no per-attack value: ``lr`` means 0.1 for GI's pixels but 1e-4 for GIAS's
    generator weights, and sharing it silently broke GIAS."""
    names = attack_names(attack)
    accepted = {n: attacks.accepted_hyperparameters(n) for n in names}
    for name, own in attack_settings.items():
        if name in defenses.available() and name not in accepted:
            raise GradinvError(f"settings for {name!r}, a defense the client does not apply "
                               "here: add it with --defense (a record's defenses are the "
                               "record's)")
        if name not in accepted:
            raise GradinvError(f"settings for {name!r}, which is not among the chosen attacks "
                               f"({', '.join(names)})")
        unknown = sorted(set(own) - accepted[name])
        if unknown:
            raise GradinvError(f"{name} takes no setting {unknown[0]!r}; it takes "
                               f"{', '.join(sorted(accepted[name]))}")
    for key in hyperparameters:
        takers = [n for n in names if key in accepted[n]]
        if not takers:
            raise GradinvError(f"no attack among {', '.join(names)} takes {key!r}")
        _refuse_ambiguous(key, [n for n in takers if key not in attack_settings.get(n, {})])
    return {n: {**{k: v for k, v in hyperparameters.items() if k in accepted[n]},
                **attack_settings.get(n, {})} for n in names}


def _refuse_ambiguous(key: str, takers: list[str]) -> None:
    defaults = {n: attacks.effective_settings(n)[key] for n in takers}
    if key in SHARED_BUDGET or len(set(map(repr, defaults.values()))) <= 1:
        return
    shown = ", ".join(f"{n} {v!r}" for n, v in defaults.items())
    raise GradinvError(f"{key} is ambiguous: {', '.join(takers)} take it with different defaults "
                       f"({shown}); set it per attack, e.g. --set {takers[-1]}.{key}=VALUE")


def build_attacks(arguments: dict[str, dict], prior: PriorSpec | None = None
                  ) -> dict[str, attacks.Attack]:
    """The chosen attacks with their settings (from ``attack_arguments``, which has already
    refused bad ones); the prior goes to those that take one."""
    takers = [n for n in arguments if "prior" in attacks.accepted_hyperparameters(n)]
    if prior is not None and not takers:
        raise GradinvError(f"no attack among {', '.join(arguments)} takes 'prior'")
    loaded = None if prior is None else load_prior(**asdict(prior))
    return {n: attacks.create(n, **kw, **({"prior": loaded} if n in takers and loaded is not None
                                          and "prior" not in kw else {}))
            for n, kw in arguments.items()}


@dataclass(frozen=True)
class RunOutcome:
    """What one configuration produced, before anything is written: every attack's outcome,
    the client's batch (the ground truth) and the settings as they ran (config.json's
    content). Sweeps and benchmarks keep it in memory; ``run_audit`` writes it."""

    config: AuditConfig
    outcomes: dict[str, Outcome]
    truth: PrivateBatch
    settings: dict


def run_config(config: AuditConfig, *, progress: bool = False, model: nn.Module | None = None,
               data: ImageDataset | None = None) -> RunOutcome:
    """Run one configuration and return its outcome; writes nothing. ``model`` replaces the
    victim built from the config, ``data`` the dataset it names (a benchmark's own images)."""
    device = resolve_device(config.device)
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
    pipeline = DefensePipeline.from_specs(config.defenses)
    update = compute_update(model, batch, kind=config.update, fedavg=config.fedavg,
                            mode=config.threat.model_mode, defenses=pipeline, seed=config.seed)
    observation = observe(update, config.threat)
    outcomes = run_attacks(chosen, model, observation, batch,
                           image_shape=tuple(batch.images.shape[1:]),
                           data_channels=data.channels, num_classes=data.num_classes,
                           seed=config.attack_seed, device=device, progress=progress)
    return RunOutcome(config, outcomes, batch,
                      run_settings(config, chosen, device, defenses_derived=pipeline.derived))


def run_audit(config: AuditConfig, *, out: str | Path | None = "runs", progress: bool = True,
              model: nn.Module | None = None) -> AuditResult:
    """``run_config``, then a run folder under ``out`` (unless ``out`` is None) holding the
    report and config.toml, from which ``gradinv attack --config`` repeats the run."""
    if out is not None:
        resolve_device(config.device)
        check_writable(out)
    run = run_config(config, progress=progress, model=model)
    folder = None
    if out is not None:
        folder = write_report(out, f"{'-'.join(run.outcomes)}-{config.model}-{config.dataset}",
                              config=run.settings, truth=run.truth, outcomes=run.outcomes,
                              title=f"gradinv: {', '.join(run.outcomes)} on {config.model}")
        save_config(config, folder / "config.toml")
    return AuditResult(run.outcomes, run.truth.images, folder)


def run_settings(config: object, chosen: dict[str, attacks.Attack], device: torch.device, *,
                 defenses_derived: list[dict] | None = None) -> dict:
    """What config.json records: the config, every attack's effective settings (defaults and
    the prior actually used included), what the client's defenses derived from their settings
    (the noise an epsilon calls for; ``DefensePipeline.derived``) and the device actually
    used."""
    return {**asdict(config), "device": str(device),  # type: ignore[call-overload]
            "device_requested": config.device,  # type: ignore[attr-defined]
            "attacks": {name: attack.settings for name, attack in chosen.items()},
            **({"defenses_derived": defenses_derived} if defenses_derived else {})}


def run_attacks(chosen: dict[str, attacks.Attack], model: nn.Module, observation: Observation,
                truth: PrivateBatch | None, *, image_shape: tuple[int, ...], data_channels: int,
                num_classes: int, seed: int, device: torch.device,
                progress: bool) -> dict[str, Outcome]:
    """Run every attack on the same observation; score each against ``truth`` when given."""
    outcomes = {}
    for name, attack in chosen.items():
        started = time.monotonic()
        rec = attack.reconstruct(model, observation, image_shape=image_shape, seed=seed,
                                 device=device, progress=progress)
        seconds = time.monotonic() - started
        scores = None if truth is None else evaluate(
            rec, truth.images, truth.labels, data_channels=data_channels, num_classes=num_classes)
        outcomes[name] = Outcome(rec, scores, seconds)
    return outcomes


def write_report(out: str | Path, name: str, *, config: dict, truth: PrivateBatch | None,
                 outcomes: dict[str, Outcome], title: str) -> Path:
    """A new run folder under ``out``: ground-truth row (if known), one row per attack (matched
    to the truth when scored), metrics.json and report.html."""
    folder = new_run_dir(out, name)
    rows = [] if truth is None else [Row("ground truth", truth.images)]
    for label, o in outcomes.items():
        images = o.reconstruction.images
        if o.scores is not None:
            images = images[torch.tensor(o.scores.order)]
        rows.append(Row(label, images, None if o.scores is None else o.scores.to_dict(),
                        o.reconstruction.loss_history))
    write_run(folder, config=config, rows=rows,
              title=title if truth is not None else f"{title} (no ground truth: not scored)",
              metrics={label: {**(o.scores.to_dict() if o.scores else {}),
                               **_summary(o.reconstruction)} for label, o in outcomes.items()})
    return folder


def _summary(reconstruction: Reconstruction) -> dict:
    return {"matching_cost": reconstruction.matching_cost,
            "restart_costs": reconstruction.restart_costs,
            "labels": reconstruction.labels.tolist(),
            "labels_inferred": bool(reconstruction.extras.get("labels_inferred", False))}


def audit(*, out: str | Path | None = "runs", progress: bool = True, **settings: object) -> AuditResult:
    """Keyword front door: settings named like ``AuditConfig`` fields; others go to the attack.

    Example: ``audit(attack="gi", model="lenet", batch_size=1, iterations=300)``.
    """
    fields = AuditConfig.__dataclass_fields__
    config = {k: v for k, v in settings.items() if k in fields}
    hyper = {k: v for k, v in settings.items() if k not in fields}
    config["hyperparameters"] = {**config.get("hyperparameters", {}), **hyper}  # type: ignore[dict-item]
    return run_audit(AuditConfig(**config), out=out, progress=progress)  # type: ignore[arg-type]
