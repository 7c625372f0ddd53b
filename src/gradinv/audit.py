"""The whole audit in one call: data -> client update -> observation -> attack -> scores -> report."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from . import attacks
from .data import adapt_channels, load_dataset, private_batch
from .defenses import DefensePipeline
from .fl import compute_update, observe
from .metrics import Scores, score
from .models import available_models, build_model, default_init_scheme
from .priors import load_prior
from .report import Row, new_run_dir, write_run
from .checks import check_bool, check_int
from .types import (DefenseSpec, FedAvgConfig, GradinvError, Observation, PrivateBatch,
                    Reconstruction, ThreatModel, UpdateKind)


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present; asking for CUDA without a GPU is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise GradinvError(f"device {name!r} requested but no CUDA GPU is available; "
                           "use --device cpu or auto")
    try:
        return torch.device(name)
    except RuntimeError:
        raise GradinvError(f"unknown device {name!r}; use auto, cpu or cuda") from None


@dataclass(frozen=True)
class PriorSpec:
    """Where an attack's generator comes from (see ``gradinv.priors.load_prior``)."""

    source: str = "fashion-mnist"
    weights: str | None = None
    latent_dim: int | None = None
    output_range: tuple[float, float] = (-1.0, 1.0)


@dataclass(frozen=True)
class AuditConfig:
    """Everything that defines one audit run; saved verbatim in the run folder.

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
    split: str = "test"
    batch_size: int = 1
    offset: int = 0
    distinct_labels: bool = True
    image_size: int = 32
    channels: int = 3
    update: UpdateKind = "fedsgd"
    fedavg: FedAvgConfig = field(default_factory=FedAvgConfig)
    threat: ThreatModel = field(default_factory=ThreatModel)
    defenses: tuple[DefenseSpec, ...] = ()
    hyperparameters: dict = field(default_factory=dict)
    prior: PriorSpec | None = None
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        for name, low in (("batch_size", 1), ("offset", 0), ("image_size", 4), ("channels", 1)):
            check_int(name, getattr(self, name), low=low)
        check_int("width", self.width, low=1, optional=True)
        check_int("seed", self.seed, low=0, high=2**63 - 1)
        check_bool("distinct_labels", self.distinct_labels)
        for name, kind in (("threat", ThreatModel), ("fedavg", FedAvgConfig),
                           ("hyperparameters", dict)):
            if not isinstance(getattr(self, name), kind):
                raise GradinvError(f"{name} must be a {kind.__name__}, not "
                                   f"{type(getattr(self, name)).__name__}")
        if isinstance(self.prior, str):  # audit(prior="faces") names a source
            object.__setattr__(self, "prior", PriorSpec(self.prior))
        if self.prior is not None and not isinstance(self.prior, PriorSpec):
            raise GradinvError(f"prior must be a source name or a PriorSpec, not "
                               f"{type(self.prior).__name__}")
        if "bn_stats" in self.hyperparameters and not self.threat.bn_stats_known:
            raise GradinvError("the BatchNorm-statistics prior needs the statistics: add "
                               "--bn-stats (the client leaks them) or drop --bn-prior")
        if self.width is not None and self.model == "lenet":
            raise GradinvError("LeNet has a fixed width (DLG's); drop --width")
        object.__setattr__(self, "defenses", DefensePipeline.from_specs(self.defenses).specs)
        # Record the scheme actually used, not "default": it changes how much leaks.
        if self.init_scheme is None and self.model in available_models():
            object.__setattr__(self, "init_scheme", default_init_scheme(self.model))


@dataclass(frozen=True)
class Outcome:
    """One attack's reconstruction and its scores against the ground truth (None when there
    is none, e.g. a recorded update whose private batch was not kept)."""

    reconstruction: Reconstruction
    scores: Scores | None


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


def build_attacks(attack: str, hyperparameters: dict,
                  prior: PriorSpec | None = None) -> dict[str, attacks.Attack]:
    """Each attack gets the shared hyper-parameters it accepts (same budget for all)."""
    hyper = dict(hyperparameters)
    if prior is not None:
        hyper["prior"] = load_prior(**asdict(prior))
    names = attack_names(attack)
    accepted = {n: attacks.accepted_hyperparameters(n) for n in names}
    unused = [k for k in hyper if not any(k in a for a in accepted.values())]
    if unused:
        raise GradinvError(f"no attack among {', '.join(names)} takes {unused[0]!r}")
    return {n: attacks.create(n, **{k: v for k, v in hyper.items() if k in accepted[n]})
            for n in names}


def run_audit(config: AuditConfig, *, out: str | Path | None = "runs", progress: bool = True,
              model: nn.Module | None = None) -> AuditResult:
    """Attack one client batch and write a run folder under ``out`` (unless ``out`` is None)."""
    device = resolve_device(config.device)
    if out is not None:
        check_writable(out)
    chosen = build_attacks(config.attack, config.hyperparameters, config.prior)
    dataset = load_dataset(config.dataset, data_dir=config.data_dir, split=config.split,
                           image_size=config.image_size)
    batch = private_batch(dataset, config.batch_size, size=config.image_size,
                          channels=config.channels, offset=config.offset,
                          distinct_labels=config.distinct_labels)
    if model is None:
        model = build_model(config.model, channels=config.channels,
                            num_classes=dataset.num_classes, image_size=config.image_size,
                            width=config.width, seed=config.seed,
                            init_scheme=config.init_scheme)
    update = compute_update(model, batch, kind=config.update, fedavg=config.fedavg,
                            mode=config.threat.model_mode,
                            defenses=DefensePipeline.from_specs(config.defenses))
    observation = observe(update, config.threat)
    outcomes = run_attacks(chosen, model, observation, batch,
                           image_shape=tuple(batch.images.shape[1:]),
                           data_channels=dataset.channels, num_classes=dataset.num_classes,
                           seed=config.seed, device=device, progress=progress)
    folder = None
    if out is not None:
        folder = write_report(out, f"{'-'.join(outcomes)}-{config.model}-{config.dataset}",
                              config=run_settings(config, chosen, device), truth=batch,
                              outcomes=outcomes,
                              title=f"gradinv: {', '.join(outcomes)} on {config.model}")
    return AuditResult(outcomes, batch.images, folder)


def run_settings(config: object, chosen: dict[str, attacks.Attack],
                 device: torch.device) -> dict:
    """What config.json records: the config, every attack's effective settings (defaults and
    the prior actually used included) and the device actually used."""
    return {**asdict(config), "device": str(device),  # type: ignore[call-overload]
            "device_requested": config.device,  # type: ignore[attr-defined]
            "attacks": {name: attack.settings for name, attack in chosen.items()}}


def check_writable(out: str | Path) -> None:
    """Refuse an output folder that cannot be written *before* spending the attack's time."""
    path = Path(out)
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise GradinvError(f"cannot write results under {out}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise GradinvError(f"cannot write results under {out}: {existing} is not writable")


def run_attacks(chosen: dict[str, attacks.Attack], model: nn.Module, observation: Observation,
                truth: PrivateBatch | None, *, image_shape: tuple[int, ...], data_channels: int,
                num_classes: int, seed: int, device: torch.device,
                progress: bool) -> dict[str, Outcome]:
    """Run every attack on the same observation; score each against ``truth`` when given."""
    outcomes = {}
    for name, attack in chosen.items():
        rec = attack.reconstruct(model, observation, image_shape=image_shape, seed=seed,
                                 device=device, progress=progress)
        scores = None if truth is None else evaluate(
            rec, truth.images, truth.labels, data_channels=data_channels, num_classes=num_classes)
        outcomes[name] = Outcome(rec, scores)
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
