"""Command-line options shared by several commands, parsed into config values one way for all:
the attacks' settings (shared hyper-parameters, ``--set NAME.key=value``, the generator prior)
and the user's own client model (``--model-factory``) for ``attack`` and ``audit``; the client's
update, threat model and defenses for ``attack`` and ``fl simulate``."""
from __future__ import annotations

import argparse
from collections.abc import Sequence

from .. import defenses
from ..attacks.base import HYPERPARAMETER_RULES
from ..attacks.gi import INITS
from ..attacks.labels import method_choices
from ..audit.config import PriorSpec, parse_assignment
from ..execution import COMPILE_CHOICES
from ..checks import GradinvError
from ..types import FEDAVG_RULES, FedAvgConfig, ThreatModel

# FedAvg's local options and the FedAvgConfig fields they set.
LOCAL_OPTIONS = {"local_lr": "lr", "local_batch_size": "local_batch_size",
                 "local_epochs": "epochs"}

HYPERPARAMETERS = ("iterations", "restarts", "lr", "tv", "cost", "top_k", "latent_iterations",
                   "init", "compile", "label_method")


def add_attack_settings_arguments(p: argparse.ArgumentParser, *, defenses: bool = True) -> None:
    """--set, the hyper-parameters every chosen attack that takes them gets, and the prior.
    ``defenses``: whether --set may also name a chosen defense (not when a record fixes them)."""
    p.add_argument("--set", action="append", metavar="NAME.KEY=VALUE", dest="assignments",
                   help=("one setting of one chosen attack or defense, e.g. --set gias.lr=1e-4 "
                         "--set gi.tv=1e-3 --set prune.rate=0.5" if defenses else
                         "one setting of one chosen attack, e.g. --set gias.lr=1e-4 --set "
                         "gi.tv=1e-3 (the record fixes the defenses)")
                   + " (value: true/false, int, float or text; repeatable; wins over the "
                   "shared options below)")
    p.add_argument("--iterations", type=int, help="every chosen attack's budget (shared)")
    p.add_argument("--restarts", type=int, help="every chosen attack's restarts (shared)")
    p.add_argument("--lr", type=float, help="attack learning rate. This and the options below "
                   "go to every chosen attack that takes them, and are refused when several "
                   "do with different defaults (gi's lr is 0.1 for pixels, gias's 1e-4 for "
                   "generator weights): use --set ATTACK.KEY=VALUE then")
    p.add_argument("--tv", type=float, help="total-variation weight")
    p.add_argument("--cost", choices=["cosine", "l2"],
                   help="gradient matching cost: cosine (GI, GI-z, GIAS) or l2 (DLG, iDLG); "
                   "default: the attack's own")
    p.add_argument("--top-k", type=int, help="match only the k layers with the largest update")
    p.add_argument("--latent-iterations", type=int, help="GIAS: iterations of the latent stage")
    p.add_argument("--bn-prior", type=float, metavar="WEIGHT",
                   help="weight of the BatchNorm-statistics prior (Yin et al. 2021); used only "
                   "when the client leaks them (--bn-stats); default 0.01")
    p.add_argument("--init", choices=sorted(INITS),
                   help="GI: start images (grey: 0.5 + 0.25 N(0,1); noise: the official N(0,1))")
    p.add_argument("--label-method", choices=method_choices(),
                   help="how withheld labels are inferred from the classifier's update (see "
                   "'gradinv list'); default auto: rlu, or the counting rule where rlu lacks "
                   "what it needs (a classifier bias; FedAvg's declared local recipe)")
    p.add_argument("--compile", choices=COMPILE_CHOICES,
                   help="compile each attack's optimisation step with torch.compile: on, off, "
                   "graphs (compiled, and replayed as CUDA graphs on a GPU) or auto (default: "
                   "graphs on CUDA for runs long enough to repay compiling, else eager)")
    p.add_argument("--prior", help="gi-z / gias generator: fashion-mnist (shipped), faces, a "
                   "file from 'gradinv prior train', or package.module:factory")
    p.add_argument("--prior-weights", help="weights file for a package.module:factory generator")
    p.add_argument("--latent-dim", type=int, help="latent size of a user generator")
    p.add_argument("--output-range", type=float, nargs=2, metavar=("LOW", "HIGH"),
                   help="value range of a user generator's output (default -1 1)")


def add_model_factory_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-factory", metavar="PACKAGE.MODULE:FACTORY",
                   help="for a record of your own client model (recorded by "
                   "gradinv.record.flower.RecordingStrategy from an nn.Module): the callable that "
                   "builds it; gradinv never imports code named in a record")


def merge_attack_options(values: dict, args: argparse.Namespace) -> None:
    """The attack options given, over a config's ``values`` (from --config, or {})."""
    values["hyperparameters"] = {**values.get("hyperparameters", {}), **_hyperparameters(args)}
    prior = _prior_from_args(args)
    if prior is not None:
        values["prior"] = vars(prior)
    _apply_assignments(values, args.assignments or ())


def _hyperparameters(args: argparse.Namespace) -> dict:
    hyper = {k: getattr(args, k) for k in HYPERPARAMETERS if getattr(args, k) is not None}
    if args.bn_prior is not None:  # the attacks' name; --bn-stats is the threat-model switch
        HYPERPARAMETER_RULES["bn_stats"]("--bn-prior", args.bn_prior)  # named as typed
        hyper["bn_stats"] = args.bn_prior
    return hyper


def _prior_from_args(args: argparse.Namespace) -> PriorSpec | None:
    """The prior options; those that only describe a user's generator are refused otherwise
    (they would be recorded as if used)."""
    if args.prior is None or ":" not in args.prior:
        given = [flag for flag, value in (("--prior-weights", args.prior_weights),
                                          ("--latent-dim", args.latent_dim),
                                          ("--output-range", args.output_range))
                 if value is not None]
        if given:
            raise GradinvError(f"{given[0]} only applies to --prior package.module:factory")
    if args.prior is None:
        return None
    return PriorSpec(args.prior, args.prior_weights, args.latent_dim,
                     tuple(args.output_range or (-1.0, 1.0)))


def _apply_assignments(values: dict, assignments: Sequence[str]) -> None:
    """Each --set NAME.key=value into ``values``: a chosen defense's settings when NAME is one
    (applied once; refused when it is applied several times), else the attack's settings."""
    per_attack = {k: dict(v) for k, v in values.get("attack_settings", {}).items()}
    chosen = [dict(d) for d in values.get("defenses", [])]
    for text in assignments:
        name, key, value = parse_assignment(text)
        matches = [d for d in chosen if d["name"] == name]
        if len(matches) > 1:
            raise GradinvError(f"--set {text!r} is ambiguous: defense {name!r} is applied "
                               f"{len(matches)} times; give its settings in --defense instead")
        if matches:
            matches[0]["settings"] = {**matches[0].get("settings", {}), key: value}
        else:
            per_attack.setdefault(name, {})[key] = value
    values["attack_settings"], values["defenses"] = per_attack, chosen


def add_update_arguments(p: argparse.ArgumentParser, *, update: str | None) -> None:
    """--update and FedAvg's local recipe; unset local options keep FedAvgConfig's defaults."""
    d = FedAvgConfig()
    p.add_argument("--update", default=update, choices=["fedsgd", "fedavg"],
                   help="default fedsgd")
    p.add_argument("--local-lr", type=float, help=f"FedAvg client learning rate (default {d.lr})")
    p.add_argument("--local-batch-size", type=int,
                   help=f"FedAvg client batch size (default {d.local_batch_size})")
    p.add_argument("--local-epochs", type=int, help=f"FedAvg client epochs (default {d.epochs})")


def add_threat_arguments(p: argparse.ArgumentParser, *, mode: str | None) -> None:
    p.add_argument("--unknown-labels", action="store_true", help="the server does not know labels")
    p.add_argument("--unknown-count", action="store_true",
                   help="the server does not know how many images the client used")
    p.add_argument("--bn-stats", action="store_true", help="the client leaks BatchNorm statistics")
    p.add_argument("--unknown-hparams", action="store_true",
                   help="the server does not know the client's local hyper-parameters")
    p.add_argument("--mode", default=mode, choices=["eval", "train"],
                   help=f"the model's mode (default {mode or ThreatModel().model_mode})")


def add_defense_arguments(p: argparse.ArgumentParser) -> None:
    """--defense and --defense-known, the same for one attacked update and a federation."""
    p.add_argument("--defense", action="append", metavar="SPEC",
                   help="a defense the client applies before sending (see 'gradinv list'), as "
                   "NAME or NAME:key=value,...; repeat to apply several in order, e.g. "
                   "--defense prune:rate=0.9 --defense noise:sigma=0.01")
    p.add_argument("--defense-known", action="store_true",
                   help="the server knows the client's defenses (not its random draws): the "
                   "attacks replay them")


def defenses_from_args(args: argparse.Namespace) -> list[dict]:
    """Each --defense SPEC as the {name, settings} a config holds."""
    return [vars(defenses.parse_spec(d)) for d in args.defense or ()]


def given_options(args: argparse.Namespace, names: Sequence[str]) -> dict:
    """The options among ``names`` that were given (unset ones are None)."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def refuse_given(args: argparse.Namespace, names: Sequence[str], why: str) -> None:
    """One line for the first option among ``names`` that was given although ``why``."""
    for name in names:
        if getattr(args, name) is not None and getattr(args, name) is not False:
            raise GradinvError(f"--{name.replace('_', '-')} {why}")


def fedavg_from_args(args: argparse.Namespace) -> FedAvgConfig | None:
    """The local options given, as a FedAvgConfig; None when none was."""
    given = local_options(args)
    return FedAvgConfig(**given) if given else None


def local_options(args: argparse.Namespace) -> dict:
    """The local options given, as FedAvgConfig fields, each checked by the field's rule under
    the option's name (--local-lr), not the field's (FedAvg: lr), which the user never typed."""
    fields = {}
    for option, value in given_options(args, LOCAL_OPTIONS).items():
        FEDAVG_RULES[LOCAL_OPTIONS[option]](f"--{option.replace('_', '-')}", value)
        fields[LOCAL_OPTIONS[option]] = value
    return fields


def threat_given(args: argparse.Namespace) -> dict:
    """The ThreatModel fields the switches given change (a switch not given changes none)."""
    given = {"labels_known": False if args.unknown_labels else None,
             "num_images_known": False if args.unknown_count else None,
             "bn_stats_known": True if args.bn_stats else None,
             "local_hparams_known": False if args.unknown_hparams else None,
             "model_mode": args.mode}
    return {k: v for k, v in given.items() if v is not None}


def threat_from_args(args: argparse.Namespace) -> ThreatModel:
    """A federation's threat model: the switches given, and --defense-known."""
    return ThreatModel(**threat_given(args), defense_known=args.defense_known)
