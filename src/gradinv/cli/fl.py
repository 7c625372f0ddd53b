"""``gradinv fl simulate``: train a federation and record what the server observes."""
from __future__ import annotations

import argparse

from ..audit.config import resolve_device
from ..data.partition import PARTITIONS
from ..fl import federation
from ..fl.federation import FederationConfig, simulate
from ..models import INIT_SCHEMES, available_models
from .options import (add_defense_arguments, add_threat_arguments, add_update_arguments,
                      defenses_from_args, fedavg_from_args, threat_from_args)


def cmd_fl_simulate(args: argparse.Namespace) -> None:
    config = FederationConfig(
        model=args.model, width=args.width, init_scheme=args.init_scheme, dataset=args.dataset,
        data_dir=args.data_dir, image_size=args.image_size, channels=args.channels,
        num_clients=args.clients, partition=args.partition, alpha=args.alpha,
        classes_per_client=args.classes_per_client, clients_per_round=args.clients_per_round,
        rounds=args.rounds, update=args.update, batch_size=args.batch_size,
        fedavg=fedavg_from_args(args), server_lr=args.server_lr,
        threat=threat_from_args(args), defenses=tuple(defenses_from_args(args)),
        test_images=args.test_images, store_private=args.store_private, seed=args.seed)
    record = simulate(config, args.record, progress=not args.quiet,
                      device=resolve_device(args.device))
    print(f"record: {record.path} ({len(record.rounds())} rounds, "
          f"{len(record.entries())} observed updates)")
    print(f"attack one: gradinv attack --record {record.path} --round R --client C")


def add_fl_parser(sub) -> None:
    fl = sub.add_parser("fl", help="simulated federations and their records").add_subparsers(
        dest="fl_command", required=True)
    p = fl.add_parser("simulate", help="train a federation and record every update the server "
                      "observes (resumes an unfinished record of the same settings)")
    d = FederationConfig()
    p.add_argument("--record", required=True, help="folder of the record (created or resumed)")
    p.add_argument("--model", default=d.model, help=f"one of {', '.join(available_models())}")
    p.add_argument("--width", type=int, help=f"model width (convnet, resnet18; default "
                   f"{federation.WIDTH})")
    p.add_argument("--init-scheme", choices=sorted(INIT_SCHEMES),
                   help="initialisation of the global model (default: the model's reference "
                   "scheme)")
    p.add_argument("--dataset", default=d.dataset,
                   help="a dataset with train and test splits: default (embedded), fashion-mnist, "
                   "mnist, cifar10, cifar100 (clients train on train, accuracy is measured on "
                   f"test; default {d.dataset})")
    p.add_argument("--data-dir", help="folder holding the dataset's files")
    p.add_argument("--image-size", type=int, default=d.image_size,
                   help=f"the model's input size (default {d.image_size})")
    p.add_argument("--channels", type=int, default=d.channels, help="the model's input channels (default "
                   f"{d.channels})")
    p.add_argument("--clients", type=int, default=d.num_clients, help="number of clients (default "
                   f"{d.num_clients})")
    p.add_argument("--partition", default=d.partition, choices=PARTITIONS,
                   help="how the train split is divided between clients (default "
                   f"{d.partition})")
    p.add_argument("--alpha", type=float, help="dirichlet partition: concentration (small: few "
                   f"classes per client; default {federation.ALPHA})")
    p.add_argument("--classes-per-client", type=int, help="classes partition: classes each "
                   f"client holds (default {federation.CLASSES_PER_CLIENT})")
    p.add_argument("--clients-per-round", type=int, help="clients sampled each round "
                   f"(default {federation.CLIENTS_PER_ROUND}, or all if fewer)")
    p.add_argument("--rounds", type=int, default=d.rounds,
                   help=f"rounds of training (default {d.rounds})")
    p.add_argument("--batch-size", type=int, default=d.batch_size,
                   help="images a client draws from its data each round (its private batch; all of "
                   "its shard if it holds fewer, more than any client holds is refused; default "
                   f"{d.batch_size})")
    p.add_argument("--server-lr", type=float, help="FedSGD: the server's step size on the mean "
                   f"gradient (default {federation.SERVER_LR})")
    p.add_argument("--test-images", type=int, help="test images the global model is scored on "
                   f"after every round (default: the first {federation.TEST_IMAGES}, or all if "
                   "fewer)")
    p.add_argument("--store-private", action=argparse.BooleanOptionalAction,
                   default=d.store_private, help="keep the clients' private batches in the "
                   "record's private/ folder (ground truth for scoring attacks)")
    p.add_argument("--seed", type=int, default=d.seed, help="seeds the model, the partition, "
                   f"the clients sampled and their batches (default {d.seed})")
    p.add_argument("--device", default="cpu", help="where the clients compute: cpu, cuda, "
                   "cuda:N or auto (default cpu, where the same settings give a bit-identical "
                   "record on every machine)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_update_arguments(p, update=d.update)
    add_threat_arguments(p, mode=d.threat.model_mode)
    add_defense_arguments(p)
    p.set_defaults(run=cmd_fl_simulate)
