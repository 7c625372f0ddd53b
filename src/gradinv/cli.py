"""The ``gradinv`` command: parse arguments, call the library, print where the results are."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import fields
from functools import partial
from pathlib import Path

from . import attacks, defenses
from .audit import AuditConfig, AuditResult, resolve_device, run_audit
from .cli_audit import add_audit_parser
from .cli_options import (add_attack_settings_arguments, add_model_factory_argument,
                          merge_attack_options)
from .data import DATASETS
from .data.partition import PARTITIONS
from .fl import federation
from .fl.federation import FederationConfig, simulate
from .fl.record import open_record
from .models import INIT_SCHEMES, available_models
from .priors.giml import GIMLConfig, learn_prior
from .record_audit import RecordAuditConfig, run_record_audit, user_model
from .settings import config_from_dict, read_toml
from .types import FedAvgConfig, GradinvError, ThreatModel

# FedAvg's local options and the FedAvgConfig fields they set.
LOCAL_OPTIONS = {"local_lr": "lr", "local_batch_size": "local_batch_size",
                 "local_epochs": "epochs"}
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
    _add_update_arguments(p, update=None)
    _add_threat_arguments(p, mode=None)
    _add_defense_arguments(p)
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


def _add_update_arguments(p: argparse.ArgumentParser, *, update: str | None) -> None:
    """--update and FedAvg's local recipe; unset local options keep FedAvgConfig's defaults."""
    d = FedAvgConfig()
    p.add_argument("--update", default=update, choices=["fedsgd", "fedavg"],
                   help="default fedsgd")
    p.add_argument("--local-lr", type=float, help=f"FedAvg client learning rate (default {d.lr})")
    p.add_argument("--local-batch-size", type=int,
                   help=f"FedAvg client batch size (default {d.local_batch_size})")
    p.add_argument("--local-epochs", type=int, help=f"FedAvg client epochs (default {d.epochs})")


def _add_threat_arguments(p: argparse.ArgumentParser, *, mode: str | None) -> None:
    p.add_argument("--unknown-labels", action="store_true", help="the server does not know labels")
    p.add_argument("--unknown-count", action="store_true",
                   help="the server does not know how many images the client used")
    p.add_argument("--bn-stats", action="store_true", help="the client leaks BatchNorm statistics")
    p.add_argument("--unknown-hparams", action="store_true",
                   help="the server does not know the client's local hyper-parameters")
    p.add_argument("--mode", default=mode, choices=["eval", "train"],
                   help=f"the model's mode (default {mode or ThreatModel().model_mode})")


def _add_defense_arguments(p: argparse.ArgumentParser) -> None:
    """--defense and --defense-known, the same for one attacked update and a federation."""
    p.add_argument("--defense", action="append", metavar="SPEC",
                   help="a defense the client applies before sending (see 'gradinv list'), as "
                   "NAME or NAME:key=value,...; repeat to apply several in order, e.g. "
                   "--defense prune:rate=0.9 --defense noise:sigma=0.01")
    p.add_argument("--defense-known", action="store_true",
                   help="the server knows the client's defenses (not its random draws): the "
                   "attacks replay them")


def _defenses_from_args(args: argparse.Namespace) -> list[dict]:
    """Each --defense SPEC as the {name, settings} a config holds."""
    return [vars(defenses.parse_spec(d)) for d in args.defense or ()]


def _given(args: argparse.Namespace, names: Sequence[str]) -> dict:
    """The options among ``names`` that were given (unset ones are None)."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def _refuse_given(args: argparse.Namespace, names: Sequence[str], why: str) -> None:
    """One line for the first option among ``names`` that was given although ``why``."""
    for name in names:
        if getattr(args, name) is not None and getattr(args, name) is not False:
            raise GradinvError(f"--{name.replace('_', '-')} {why}")


def _fedavg_from_args(args: argparse.Namespace) -> FedAvgConfig | None:
    """The local options given, as a FedAvgConfig; None when none was."""
    given = _given(args, LOCAL_OPTIONS)
    return FedAvgConfig(**{LOCAL_OPTIONS[k]: v for k, v in given.items()}) if given else None


def _threat_given(args: argparse.Namespace) -> dict:
    """The ThreatModel fields the switches given change (a switch not given changes none)."""
    given = {"labels_known": False if args.unknown_labels else None,
             "num_images_known": False if args.unknown_count else None,
             "bn_stats_known": True if args.bn_stats else None,
             "local_hparams_known": False if args.unknown_hparams else None,
             "model_mode": args.mode}
    return {k: v for k, v in given.items() if v is not None}


def _threat_from_args(args: argparse.Namespace) -> ThreatModel:
    """A federation's threat model: the switches given, and --defense-known."""
    return ThreatModel(**_threat_given(args), defense_known=args.defense_known)


def config_from_args(args: argparse.Namespace) -> AuditConfig:
    """A fresh client batch: the --config file (if any), overridden by the options given;
    what neither sets keeps AuditConfig's defaults."""
    _refuse_given(args, ("round", "client", "model_factory"),
                  "only applies to --record (a recorded update)")
    values = _config_file(args)
    # The file stores resolved values; one derived from an option given now is derived again.
    for option, derived in (("seed", ("model_seed", "attack_seed")), ("model", ("init_scheme",)),
                            ("dataset", ("split",))):
        if getattr(args, option) is not None:
            for name in derived:
                values.pop(name, None)
    values.update(_given(args, ("attack", *BATCH_FIELDS, "seed", "model_seed", "attack_seed",
                                "device")))
    if args.allow_repeated_labels:
        values["distinct_labels"] = False
    fedavg = _given(args, LOCAL_OPTIONS)
    if fedavg:
        values["fedavg"] = {**values.get("fedavg", {}),
                            **{LOCAL_OPTIONS[k]: v for k, v in fedavg.items()}}
    values["threat"] = {**values.get("threat", {}), **_threat_given(args),
                        **({"defense_known": True} if args.defense_known else {})}
    if args.defense:
        values["defenses"] = _defenses_from_args(args)
    merge_attack_options(values, args)
    return config_from_dict(AuditConfig, values)  # type: ignore[return-value]


def record_config_from_args(args: argparse.Namespace) -> RecordAuditConfig:
    """A recorded update: the record fixes the model, the data, the update and the threat
    model (its updates are attacked as they were recorded), so options for those are refused."""
    _refuse_given(args, FRESH_OPTIONS, "does not apply to --record: the record fixes the model, "
                  "the client's data and update, and the threat model")
    values = _config_file(args)
    values.update(_given(args, ("record", "round", "client", "attack", "model_factory",
                                "device")))
    if "round" not in values or "client" not in values:
        raise GradinvError("--record needs --round and --client (the update to attack)")
    seed = args.attack_seed if args.attack_seed is not None else args.seed
    if seed is not None:
        values["seed"] = seed
    merge_attack_options(values, args)
    if values.pop("defenses"):
        raise GradinvError("--set names a defense, but with --record the record fixes them")
    return config_from_dict(RecordAuditConfig, values)  # type: ignore[return-value]


def _config_file(args: argparse.Namespace) -> dict:
    """The --config file's values ({} without one)."""
    return read_toml(args.config) if args.config else {}


def _print_result(result: AuditResult) -> None:
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
    _print_result(result)


def cmd_list(args: argparse.Namespace) -> None:
    print("attacks:")
    for name, summary in attacks.available().items():
        print(f"  {name:8s} {summary}")
    print("defenses (--defense NAME:key=value,...):")
    for name, summary in defenses.available().items():
        print(f"  {name:8s} {summary}")
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
    _print_result(run_audit(config, out=args.out, progress=not args.quiet))


def cmd_fl_simulate(args: argparse.Namespace) -> None:
    config = FederationConfig(
        model=args.model, width=args.width, init_scheme=args.init_scheme, dataset=args.dataset,
        data_dir=args.data_dir, image_size=args.image_size, channels=args.channels,
        num_clients=args.clients, partition=args.partition, alpha=args.alpha,
        classes_per_client=args.classes_per_client, clients_per_round=args.clients_per_round,
        rounds=args.rounds, update=args.update, batch_size=args.batch_size,
        fedavg=_fedavg_from_args(args), server_lr=args.server_lr,
        threat=_threat_from_args(args), defenses=tuple(_defenses_from_args(args)),
        test_images=args.test_images, store_private=args.store_private, seed=args.seed)
    record = simulate(config, args.record, progress=not args.quiet)
    print(f"record: {record.path} ({len(record.rounds())} rounds, "
          f"{len(record.entries())} observed updates)")
    print(f"attack one: gradinv attack --record {record.path} --round R --client C")


def _add_fl_parser(sub) -> None:
    fl = sub.add_parser("fl", help="simulated federations and their records").add_subparsers(
        dest="fl_command", required=True)
    p = fl.add_parser("simulate", help="train a federation and record every update the server "
                      "observes (resumes an unfinished record of the same settings)")
    d = FederationConfig()
    p.add_argument("--record", required=True, help="folder of the record (created or resumed)")
    p.add_argument("--model", default=d.model, help=f"one of {', '.join(available_models())}")
    p.add_argument("--width", type=int, help=f"model width (convnet, resnet18; default "
                   f"{federation.WIDTH})")
    p.add_argument("--init-scheme", choices=sorted(INIT_SCHEMES))
    p.add_argument("--dataset", default=d.dataset,
                   help="a dataset with train and test splits: default (embedded), fashion-mnist, "
                   "mnist, cifar10, cifar100 (clients train on train, accuracy is measured on "
                   "test)")
    p.add_argument("--data-dir", help="folder holding the dataset's files")
    p.add_argument("--image-size", type=int, default=d.image_size)
    p.add_argument("--channels", type=int, default=d.channels, help="the model's input channels")
    p.add_argument("--clients", type=int, default=d.num_clients, help="number of clients")
    p.add_argument("--partition", default=d.partition, choices=PARTITIONS,
                   help="how the train split is divided between clients")
    p.add_argument("--alpha", type=float, help="dirichlet partition: concentration (small: few "
                   f"classes per client; default {federation.ALPHA})")
    p.add_argument("--classes-per-client", type=int, help="classes partition: classes each "
                   f"client holds (default {federation.CLASSES_PER_CLIENT})")
    p.add_argument("--clients-per-round", type=int, help="clients sampled each round "
                   f"(default {federation.CLIENTS_PER_ROUND}, or all if fewer)")
    p.add_argument("--rounds", type=int, default=d.rounds)
    p.add_argument("--batch-size", type=int, default=d.batch_size,
                   help="images a client draws from its data each round (its private batch)")
    p.add_argument("--server-lr", type=float, help="FedSGD: the server's step size on the mean "
                   f"gradient (default {federation.SERVER_LR})")
    p.add_argument("--test-images", type=int, help="test images the global model is scored on "
                   f"after every round (default: the first {federation.TEST_IMAGES}, or all if "
                   "fewer)")
    p.add_argument("--store-private", action=argparse.BooleanOptionalAction,
                   default=d.store_private, help="keep the clients' private batches in the "
                   "record's private/ folder (ground truth for scoring attacks)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_update_arguments(p, update=d.update)
    _add_threat_arguments(p, mode=d.threat.model_mode)
    _add_defense_arguments(p)
    p.set_defaults(run=cmd_fl_simulate)


def cmd_prior_train(args: argparse.Namespace) -> None:
    from .priors.train import PriorTrainingConfig, train_prior
    config = PriorTrainingConfig(
        dataset=args.dataset, data_dir=args.data_dir, image_size=args.image_size,
        latent_dim=args.latent_dim, width=args.width, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, seed=args.seed, max_images=args.max_images)
    path = train_prior(config, args.out, progress=not args.quiet)
    print(f"generator: {path}")


def cmd_prior_learn(args: argparse.Namespace) -> None:
    record = open_record(args.record)
    config = GIMLConfig(**{f.name: getattr(args, f.name) for f in fields(GIMLConfig)
                           if getattr(args, f.name) is not None})
    spec = record.meta.model
    model = (record.build_model() if args.model_factory is None
             else user_model(args.model_factory, record))
    path = learn_prior(model, record.observations(),
                       (spec.channels, spec.image_size, spec.image_size), config, args.out,
                       device=resolve_device(args.device), progress=not args.quiet)
    print(f"generator: {path} (use it with --prior {path})")


def _add_giml_arguments(p: argparse.ArgumentParser) -> None:
    """One option per GIMLConfig field; unset options keep the paper's defaults."""
    for f in fields(GIMLConfig):
        kind = float if f.type == "float" else int
        p.add_argument("--" + f.name.replace("_", "-"), type=kind,
                       help=f"default {f.default}")


def _add_prior_parser(sub) -> None:
    prior = sub.add_parser("prior", help="generative image priors").add_subparsers(
        dest="prior_command", required=True)
    train = prior.add_parser("train", help="train a DCGAN prior on a train split (resumable)")
    train.add_argument("--dataset", default="fashion-mnist")
    train.add_argument("--data-dir")
    train.add_argument("--image-size", type=int, default=32, choices=[32, 64])
    train.add_argument("--latent-dim", type=int, default=100)
    train.add_argument("--width", type=int, default=64)
    train.add_argument("--epochs", type=int, default=10)
    train.add_argument("--batch-size", type=int, default=128)
    train.add_argument("--lr", type=float, default=2e-4)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--max-images", type=int, help="use only the first N training images")
    train.add_argument("--out", default="priors/fashion-mnist",
                       help="folder for checkpoints, samples and generator.pt (resumes here)")
    train.add_argument("--quiet", action="store_true")
    train.set_defaults(run=cmd_prior_train)
    learn = prior.add_parser("learn", help="GIML: learn a prior from a federation record's "
                             "observed updates (resumable)")
    learn.add_argument("--record", required=True, help="record written by 'gradinv fl simulate'")
    _add_giml_arguments(learn)
    add_model_factory_argument(learn)
    learn.add_argument("--device", default="auto")
    learn.add_argument("--out", default="priors/giml",
                       help="folder for checkpoints, samples and generator.pt (resumes here)")
    learn.add_argument("--quiet", action="store_true")
    learn.set_defaults(run=cmd_prior_learn)


def cmd_sweep(args: argparse.Namespace) -> None:
    from .sweep import local_backend, ray_backend, run_sweep
    out = args.out or str(Path("sweeps") / Path(args.sweep).stem)
    if args.backend == "local" and (args.address or args.gpus_per_run):
        raise GradinvError("--address and --gpus-per-run only apply to --backend ray")
    backend = local_backend if args.backend == "local" else partial(
        ray_backend, address=args.address, gpus_per_run=args.gpus_per_run or 0.0)
    lines = run_sweep(args.sweep, out, workers=args.workers, retry_failed=args.retry_failed,
                      progress=not args.quiet, backend=backend)
    failed = sum(line["status"] == "failed" for line in lines)
    print(f"sweep: {len(lines)} run(s) done now ({failed} failed); results: "
          f"{Path(out) / 'results.jsonl'}")
    if failed:
        raise GradinvError(f"{failed} run(s) of the sweep failed (their errors are in "
                           f"{Path(out) / 'results.jsonl'}; --retry-failed runs them again)")


def _add_sweep_parser(sub) -> None:
    p = sub.add_parser("sweep", help="run a grid of audits (attack x defense x strength x "
                       "batch size x seed) from a TOML file; resumes where it stopped")
    p.add_argument("sweep", help="the sweep file (see gradinv.sweep for its format)")
    p.add_argument("--out", help="SWEEP_DIR: results.jsonl and runs/ (default "
                   "sweeps/<file name>)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1); "
                   "with --backend ray, the CPUs of the local Ray instance")
    p.add_argument("--backend", choices=["local", "ray"], default="local",
                   help="local worker processes, or Ray tasks (pip install 'gradinv[ray]')")
    p.add_argument("--address", help="--backend ray: the address of an existing Ray cluster "
                   "(default: start a local instance and stop it afterwards)")
    p.add_argument("--gpus-per-run", type=float, help="--backend ray: GPUs each run takes (a "
                   "fraction shares one; default 0)")
    p.add_argument("--retry-failed", action="store_true", help="run again the runs that failed")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_sweep)


def cmd_report(args: argparse.Namespace) -> None:
    from .report.sweep_report import write_sweep_report
    print(f"report: {write_sweep_report(args.sweep_dir)}")


def _add_report_parser(sub) -> None:
    p = sub.add_parser("report", help="plots and a table of a sweep: leakage vs defense "
                       "strength per attack (matplotlib if installed: pip install "
                       "'gradinv[plots]')")
    p.add_argument("sweep_dir", help="the SWEEP_DIR of 'gradinv sweep'")
    p.set_defaults(run=cmd_report)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gradinv", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    attack = sub.add_parser("attack", help="attack one client batch and write a report")
    _add_attack_arguments(attack)
    attack.set_defaults(run=cmd_attack)
    sub.add_parser("list", help="list attacks, models and datasets").set_defaults(run=cmd_list)
    demo = sub.add_parser("demo", help="run the built-in demonstration")
    demo.add_argument("--out", default="runs/demo")
    demo.add_argument("--iterations", type=int, default=600)
    demo.add_argument("--restarts", type=int, default=1)
    demo.add_argument("--model", default="convnet", help="resnet18 is the paper's (use a GPU)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--device", default="auto")
    demo.add_argument("--quiet", action="store_true")
    demo.set_defaults(run=cmd_demo)
    _add_fl_parser(sub)
    _add_prior_parser(sub)
    _add_sweep_parser(sub)
    _add_report_parser(sub)
    add_audit_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except GradinvError as err:
        print(f"gradinv: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gradinv: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
