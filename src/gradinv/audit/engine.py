"""The engine every audit shares: choose and build the attacks with their settings, run them
on one observed update, score them against the ground truth, write a run folder."""
from __future__ import annotations

import difflib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from .. import attacks, defenses
from ..checks import GradinvError, check_int
from ..data import adapt_channels
from ..metrics import Scores, score
from ..models import has_batch_norm
from ..priors import load_prior
from ..report import Row, new_run_dir, write_run
from ..types import Observation, PrivateBatch, Reconstruction, ThreatModel
from .config import PriorSpec


def check_attack_settings(config: object) -> None:
    """What every audit config shares: its seeds (unset ones resolved from ``seed``), its
    hyper-parameters (dicts), its prior (a source name becomes a ``PriorSpec``, as in
    ``audit(prior="faces")``) and its attack list (``attack_names``)."""
    attack_names(config.attack)  # type: ignore[attr-defined]
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
    check_attack_values(attack_arguments(config.attack, hyper, per_attack))  # type: ignore[attr-defined]
    prior = config.prior  # type: ignore[attr-defined]
    if isinstance(prior, str):
        object.__setattr__(config, "prior", PriorSpec(prior))
    elif prior is not None and not isinstance(prior, PriorSpec):
        raise GradinvError(f"prior must be a source name or a PriorSpec, not "
                           f"{type(prior).__name__}")


def _who_takes(key: str) -> str:
    """Which attacks take the setting ``key``, for an error that tells where it belongs."""
    takers = [n for n in attacks.available() if key in attacks.accepted_hyperparameters(n)]
    if takers:
        return f"{', '.join(takers)} take{'s' if len(takers) == 1 else ''} it"
    return "no attack takes it" + (did_you_mean(key, every_attack_setting())
                                   or " (see 'gradinv attack --help')")


def every_attack_setting() -> set[str]:
    """The settings some attack takes."""
    return {key for name in attacks.available() for key in attacks.accepted_hyperparameters(name)}


def did_you_mean(key: str, names: set[str]) -> str:
    """'; did you mean X?' with the name among ``names`` closest to a mistyped ``key``, or ''."""
    close = difflib.get_close_matches(key, sorted(names), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def check_attack_values(arguments: dict[str, dict]) -> None:
    """Each attack's settings (``attack_arguments``) within its bounds, checked by building
    the attack (with its default prior: the prior itself is loaded when the run starts), so
    a bad value in a run or sweep file is refused with the file's name before anything runs."""
    for name, given in arguments.items():
        attacks.create(name, **{k: v for k, v in given.items() if k != "prior"})


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
    # the attack's wall-clock time; for updates attacked together (``run_attacks_many``), its
    # time on all of them divided among them
    seconds: float = 0.0


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
    if not isinstance(attack, str):
        raise GradinvError(f"attack must be a name or comma-separated names (a str), not "
                           f"{type(attack).__name__} {attack!r}")
    names = [n.strip() for n in attack.split(",") if n.strip()]
    if not names:
        raise GradinvError(f"bad attack list {attack!r}: no attack named")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise GradinvError(f"bad attack list {attack!r}: {', '.join(twice)} named twice")
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
            raise GradinvError(f"no chosen attack ({', '.join(names)}) takes {key!r}; "
                               f"{_who_takes(key)}")
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


def run_settings(config: object, chosen: dict[str, attacks.Attack], outcomes: dict[str, Outcome],
                 device: torch.device, *, defenses_derived: list[dict] | None = None) -> dict:
    """What config.json records: the config, every attack's effective settings (defaults and
    the prior actually used included) and how its loops ran (compiled or eager and why, fp32
    precision), what the client's defenses derived from their settings (the noise an epsilon
    calls for; ``DefensePipeline.derived``) and the device actually used."""
    return {**asdict(config), "device": str(device),  # type: ignore[call-overload]
            "device_requested": config.device,  # type: ignore[attr-defined]
            "attacks": {name: attack.settings for name, attack in chosen.items()},
            "execution": {name: o.reconstruction.extras.get("execution")
                          for name, o in outcomes.items()},
            **({"defenses_derived": defenses_derived} if defenses_derived else {})}


def run_attacks(chosen: dict[str, attacks.Attack], model: nn.Module, observation: Observation,
                truth: PrivateBatch | None, *, image_shape: tuple[int, ...], data_channels: int,
                num_classes: int, seed: int, device: torch.device,
                progress: bool,
                after_each: Callable[[dict[str, Outcome]], None] | None = None
                ) -> dict[str, Outcome]:
    """Run every attack on the same observation; score each against ``truth`` when given.
    ``after_each``: called with the outcomes so far as each attack ends."""
    return run_attacks_many(chosen, model, [observation], [truth], image_shape=image_shape,
                            data_channels=data_channels, num_classes=num_classes, seed=seed,
                            device=device, progress=progress,
                            after_each=None if after_each is None else
                            lambda outcomes: after_each(outcomes[0]))[0]


def run_attacks_many(chosen: dict[str, attacks.Attack], model: nn.Module,
                     observations: Sequence[Observation], truths: Sequence[PrivateBatch | None],
                     *, image_shape: tuple[int, ...], data_channels: int, num_classes: int,
                     seed: int, device: torch.device, progress: bool,
                     after_each: Callable[[list[dict[str, Outcome]]], None] | None = None
                     ) -> list[dict[str, Outcome]]:
    """``run_attacks`` for several observations (the clients of one round), each attack given
    them all at once (``Attack.reconstruct_many``: those that can, match them in one batched
    pass). An outcome's ``seconds`` is its share of the attack's time on them all.
    ``after_each``: called with the outcomes so far as each attack ends (a caller stopped
    part-way can keep what finished)."""
    outcomes: list[dict[str, Outcome]] = [{} for _ in observations]
    for name, attack in chosen.items():
        started = time.monotonic()
        found = attack.reconstruct_many(model, observations, image_shape=image_shape, seed=seed,
                                        device=device, progress=progress)
        seconds = (time.monotonic() - started) / len(observations)
        for own, rec, truth in zip(outcomes, found, truths, strict=True):
            scores = None if truth is None else evaluate(
                rec, truth.images, truth.labels, data_channels=data_channels,
                num_classes=num_classes)
            own[name] = Outcome(rec, scores, seconds)
        if after_each is not None:
            after_each(outcomes)
    return outcomes


def interrupted(chosen: Sequence[str], ran: Sequence[str]) -> tuple[list[str], str]:
    """For a run stopped part-way (Ctrl-C, SIGTERM) and kept: the chosen attacks that did not
    run (config.json's ``not_run``), and the note its report's title ends with."""
    not_run = [name for name in chosen if name not in ran]
    return not_run, f" (interrupted: {', '.join(not_run)} did not run)"


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
            # not given by the threat model: inferred before the search, or learned in it (DLG)
            "labels_inferred": bool(reconstruction.extras.get("labels_inferred")
                                    or reconstruction.extras.get("soft_labels_learned")),
            "label_method": reconstruction.extras.get("label_method")}


