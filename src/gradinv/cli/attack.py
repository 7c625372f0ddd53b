"""``gradinv attack`` (a fresh client batch, or ``--record``: one recorded update), ``gradinv
list`` and ``gradinv demo``."""
from __future__ import annotations

import argparse

from .. import attacks, defenses
from ..attacks import labels
from ..audit.batch import AuditConfig, run_audit
from ..audit.config import check_shape, config_from_dict, read_toml
from ..audit.engine import AuditResult
from ..audit.update import RecordAuditConfig, run_record_audit
from ..data import DATASETS
from ..models import INIT_SCHEMES, available_models
from ..checks import GradinvError
from .options import (LOCAL_OPTIONS, add_attack_settings_arguments, add_defense_arguments,
                      add_model_factory_argument, add_threat_arguments, add_update_arguments,
                      defenses_from_args, given_options, local_options, merge_attack_options,
                      refuse_given, threat_given)

# The options of 'gradinv attack' that make the fresh client batch and its update, named like
# the AuditConfig fields they set (unset: None, so that a given one can be told apart) ...
BATCH_FIELDS = ("model", "width", "init_scheme", "dataset", "data_dir", "split", "batch_size",
                "offset", "image_size", "channels", "update")
# ... and all of them, switches included: a record fixes every one, so with --record they
# would be silently ignored.
FRESH_OPTIONS = (*BATCH_FIELDS, "allow_repeated_labels", *LOCAL_OPTIONS, "unknown_labels",
                 "unknown_count", "bn_stats", "unknown_hparams", "mode", "defense",
                 "defense_known", "model_seed")


def _add_attack_arguments(p: argparse.ArgumentParser) -> None:
    d = AuditConfig()
    p.add_argument("--config", metavar="FILE", help="a run configuration in TOML (every run "
                   "folder holds its own config.toml); options given here override it")
    p.add_argument("--attack", help="attack name (see 'gradinv list'), or a comma-separated "
                   f"list to compare on the same update with the same budget (default {d.attack})")
    p.add_argument("--model", help=f"victim model: {', '.join(available_models())} (default "
                   f"{d.model})")
    p.add_argument("--width", type=int, help="model width (convnet, resnet18)")
    p.add_argument("--init-scheme", choices=sorted(INIT_SCHEMES),
                   help="victim initialisation; default: kaiming-fan-out (as torchvision) for "
                   "convnet and resnet18, dlg-uniform for lenet; pytorch: the layer defaults, "
                   "whose gradients leak far more")
    p.add_argument("--dataset", help=f"one of {', '.join(DATASETS)} (default {d.dataset})")
    p.add_argument("--data-dir", help="folder holding the dataset's files")
    p.add_argument("--split", choices=["train", "test"], help=f"default {d.split} (datasets "
                   "with a train and a test split only)")
    p.add_argument("--batch-size", type=int, help=f"default {d.batch_size}")
    p.add_argument("--offset", type=int, help="index where the batch search starts (default "
                   f"{d.offset})")
    p.add_argument("--allow-repeated-labels", action="store_true",
                   help="allow a batch to hold several images of one class")
    p.add_argument("--image-size", type=int, help=f"default {d.image_size}")
    p.add_argument("--channels", type=int, help=f"the model's input channels (default "
                   f"{d.channels})")
    add_update_arguments(p, update=None)
    add_threat_arguments(p, mode=None)
    add_defense_arguments(p)
    p.add_argument("--record", help="attack an update of this federation record (from "
                   "'gradinv fl simulate' or gradinv.flower) instead: model, weights and threat "
                   "model come from it")
    p.add_argument("--round", type=int, help="with --record: the round of the update")
    p.add_argument("--client", type=int, help="with --record: the client of the update")
    add_model_factory_argument(p)
    add_attack_settings_arguments(p)
    p.add_argument("--seed", type=int, help="seeds both the victim model and the attack "
                   "(default 0)")
    p.add_argument("--model-seed", type=int, help="seed of the victim's initialisation "
                   "(default: --seed)")
    p.add_argument("--attack-seed", type=int, help="seed of the attack's random starts "
                   "(default: --seed)")
    p.add_argument("--device", help="auto, cpu or cuda (default auto)")
    p.add_argument("--out", default="runs", help="folder where the run folder is created")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace) -> AuditConfig:
    """A fresh client batch: the --config file (if any), overridden by the options given;
    what neither sets keeps AuditConfig's defaults."""
    refuse_given(args, ("round", "client", "model_factory"),
                  "only applies to --record (a recorded update)")
    values = _config_file(args)
    # The file stores resolved values; one derived from an option given now is derived again.
    for option, derived in (("seed", ("model_seed", "attack_seed")), ("model", ("init_scheme",)),
                            ("dataset", ("split",))):
        if getattr(args, option) is not None:
            for name in derived:
                values.pop(name, None)
    values.update(given_options(args, ("attack", *BATCH_FIELDS, "seed", "model_seed", "attack_seed",
                                "device")))
    if args.allow_repeated_labels:
        values["distinct_labels"] = False
    fedavg = local_options(args)
    if fedavg:
        values["fedavg"] = {**values.get("fedavg", {}), **fedavg}
    values["threat"] = {**values.get("threat", {}), **threat_given(args),
                        **({"defense_known": True} if args.defense_known else {})}
    if args.defense:
        values["defenses"] = defenses_from_args(args)
    merge_attack_options(values, args)
    return config_from_dict(AuditConfig, values, where=args.config)  # type: ignore[return-value]


def record_config_from_args(args: argparse.Namespace) -> RecordAuditConfig:
    """A recorded update: the record fixes the model, the data, the update and the threat
    model (its updates are attacked as they were recorded), so options for those are refused."""
    refuse_given(args, FRESH_OPTIONS, "does not apply to --record: the record fixes the model, "
                  "the client's data and update, and the threat model")
    values = _config_file(args)
    values.update(given_options(args, ("record", "round", "client", "attack", "model_factory",
                                "device")))
    if "round" not in values or "client" not in values:
        raise GradinvError("--record needs --round and --client (the update to attack)")
    seed = args.attack_seed if args.attack_seed is not None else args.seed
    if seed is not None:
        values["seed"] = seed
    merge_attack_options(values, args)
    if values.pop("defenses"):
        raise GradinvError("--set names a defense, but with --record the record fixes them")
    return config_from_dict(RecordAuditConfig, values,  # type: ignore[return-value]
                            where=args.config)


def _config_file(args: argparse.Namespace) -> dict:
    """The --config file's values ({} without one)."""
    if not args.config:
        return {}
    values = read_toml(args.config)
    check_shape(RecordAuditConfig if "record" in values else AuditConfig, values,
                where=args.config)  # options are merged into its tables
    return values


def print_result(result: AuditResult) -> None:
    for name, outcome in result.outcomes.items():
        s = outcome.scores
        if s is None:
            rec = outcome.reconstruction
            print(f"{name}: matching cost {rec.matching_cost:.4g}, labels {rec.labels.tolist()}; "
                  "no ground truth in the record, so nothing is scored")
            continue
        print(f"{name}: mean PSNR {s.mean_psnr:.2f} dB, mean SSIM {s.mean_ssim:.3f}, best PSNR "
              f"{s.best_psnr:.2f} dB, label accuracy {s.label_accuracy:.2f}, matching cost "
              f"{outcome.reconstruction.matching_cost:.4g}")
        if s.diverged:
            print(f"{name}: {s.diverged} of the reconstructed images diverged (non-finite "
                  "pixels; scored as blank grey): lower the learning rate")
        if s.count_error:
            print(f"{name}: reconstructed {s.count_error:+d} images relative to the truth; "
                  "only the pairs that match are scored")
    if result.folder is not None:
        print(f"report: {result.folder / 'report.html'}")


def cmd_attack(args: argparse.Namespace) -> None:
    if args.record is not None or "record" in _config_file(args):
        result = run_record_audit(record_config_from_args(args), out=args.out,
                                  progress=not args.quiet)
    else:
        result = run_audit(config_from_args(args), out=args.out, progress=not args.quiet)
    print_result(result)


def cmd_list(args: argparse.Namespace) -> None:
    print("attacks:")
    for name, summary in attacks.available().items():
        print(f"  {name:8s} {summary}")
    print("label methods (--label-method; default auto):")
    for name, summary in labels.available().items():
        print(f"  {name:8s} {summary}")
    print("defenses (--defense NAME:key=value,...; below each, its settings and defaults):")
    for name, summary in defenses.available().items():
        print(f"  {name:8s} {summary}\n  {'':8s}   {defenses.settings_help(name)}")
    print(f"models:   {', '.join(available_models())}")
    print(f"datasets: {', '.join(DATASETS)}")
    print("priors (--prior): fashion-mnist (shipped), faces (DigiFace DCGAN, make faces), a "
          "generator.pt from 'gradinv prior train' or 'prior learn', package.module:factory")


def cmd_demo(args: argparse.Namespace) -> None:
    """GI and GIAS side by side, same batch and budget: four held-out Fashion-MNIST images
    (embedded) against a ConvNet initialised as torchvision does (Kaiming fan_out), GIAS with
    the shipped prior. On this victim pixels alone leak little; the prior brings images back."""
    config = AuditConfig(attack="gi,gias", model=args.model, dataset="default", batch_size=4,
                         hyperparameters={"iterations": args.iterations,
                                          "restarts": args.restarts},
                         seed=args.seed, device=args.device)
    print_result(run_audit(config, out=args.out, progress=not args.quiet))


def add_attack_parsers(sub) -> None:
    """``attack``, ``list`` and ``demo``."""
    attack = sub.add_parser("attack", help="attack one client batch and write a report")
    _add_attack_arguments(attack)
    attack.set_defaults(run=cmd_attack)
    sub.add_parser("list", help="list attacks, models and datasets").set_defaults(run=cmd_list)
    demo = sub.add_parser("demo", help="run the built-in demonstration")
    demo.add_argument("--out", default="runs/demo",
                      help="folder where the run folder is created (default runs/demo)")
    demo.add_argument("--iterations", type=int, default=600,
                      help="iterations of each attack, the same for both (default 600)")
    demo.add_argument("--restarts", type=int, default=1, help="restarts of each attack "
                      "(default 1)")
    demo.add_argument("--model", default="convnet", help="victim model (default convnet; "
                      "resnet18 is the paper's, use a GPU)")
    demo.add_argument("--seed", type=int, default=0, help="seeds the victim model and the "
                      "attacks (default 0)")
    demo.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(run=cmd_demo)
