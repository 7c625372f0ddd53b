"""``gradinv prior train`` (a DCGAN on a train split) and ``gradinv prior learn`` (GIML from a
record's updates)."""
from __future__ import annotations

import argparse
from dataclasses import fields

from ..attacks.giml import GIMLConfig, learn_prior
from ..audit.config import resolve_device
from ..audit.update import user_model
from ..record import open_record
from .options import add_model_factory_argument


def cmd_prior_train(args: argparse.Namespace) -> None:
    from ..priors.train import PriorTrainingConfig, train_prior
    config = PriorTrainingConfig(
        dataset=args.dataset, data_dir=args.data_dir, image_size=args.image_size,
        latent_dim=args.latent_dim, width=args.width, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, seed=args.seed, max_images=args.max_images)
    path = train_prior(config, args.out, device=resolve_device(args.device),
                       progress=not args.quiet)
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
                       device=resolve_device(args.device), progress=not args.quiet,
                       source=record.identity())
    print(f"generator: {path} (use it with --prior {path})")


# What each GIMLConfig field sets, for its option's help (its default follows).
GIML_HELP = {
    "latent_dim": "size of the learned generator's latent code",
    "width": "channels of the DCGAN's widest layer",
    "image_size": "the generator's output size",
    "channels": "the generator's output channels",
    "latent_iterations": "iterations of the latent search per update",
    "latent_lr": "learning rate of the latent search",
    "tv": "total-variation weight of the inner searches",
    "latent_norm": "weight of the latent code's norm penalty",
    "adapt_iterations": "iterations adapting a copy of the generator to an update",
    "adapt_lr": "learning rate of that adaptation",
    "meta_lr": "Reptile step size moving the generator towards the adapted copy",
    "restarts": "latent searches per update",
    "meta_batch": "updates per meta step, at most the record's (their adapted copies "
                  "averaged: Reptile over a batch)",
    "steps": "meta steps",
    "sample_every": "write a sample grid every N steps",
    "checkpoint_every": "write a checkpoint every N steps",
    "seed": "seed of the generator's initialisation and the searches",
}
# The defaults that are not a value: what None means.
GIML_NONE = {"channels": "the attacked model's input channels",
             "steps": "one pass over the record's updates, ceil(updates / meta-batch) "
                      "steps"}


def _add_giml_arguments(p: argparse.ArgumentParser) -> None:
    """One option per GIMLConfig field; unset options keep the paper's defaults."""
    for f in fields(GIMLConfig):
        kind = float if f.type == "float" else int
        default = GIML_NONE[f.name] if f.default is None else f.default
        p.add_argument("--" + f.name.replace("_", "-"), type=kind,
                       help=f"{GIML_HELP[f.name]} (default {default})")


def add_prior_parser(sub) -> None:
    prior = sub.add_parser("prior", help="generative image priors").add_subparsers(
        dest="prior_command", required=True)
    train = prior.add_parser("train", help="train a DCGAN prior on a train split (resumable)")
    train.add_argument("--dataset", default="fashion-mnist", help="a dataset with a train "
                       "split, trained on that split only (default fashion-mnist)")
    train.add_argument("--data-dir", help="folder holding the dataset's files")
    train.add_argument("--image-size", type=int, default=32, choices=[32, 64],
                       help="the generator's output size (default 32)")
    train.add_argument("--latent-dim", type=int, default=100,
                       help="size of the generator's latent code (default 100)")
    train.add_argument("--width", type=int, default=64,
                       help="channels of the DCGAN's widest layer (default 64)")
    train.add_argument("--epochs", type=int, default=10, help="passes over the train split "
                       "(default 10)")
    train.add_argument("--batch-size", type=int, default=128, help="default 128")
    train.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate of both "
                       "networks (default 2e-4)")
    train.add_argument("--seed", type=int, default=0, help="default 0")
    train.add_argument("--max-images", type=int, help="use only the first N training images")
    train.add_argument("--out", default="priors/fashion-mnist",
                       help="folder for checkpoints, samples and generator.pt (resumes here)")
    train.add_argument("--device", default="cpu", help="where the networks train: cpu, cuda, "
                       "cuda:N or auto (default cpu)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(run=cmd_prior_train)
    learn = prior.add_parser("learn", help="GIML: learn a prior from a federation record's "
                             "observed updates (resumable)")
    learn.add_argument("--record", required=True, help="record written by 'gradinv fl simulate'")
    _add_giml_arguments(learn)
    add_model_factory_argument(learn)
    learn.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    learn.add_argument("--out", default="priors/giml",
                       help="folder for checkpoints, samples and generator.pt (resumes here)")
    learn.add_argument("--quiet", action="store_true", help="no progress bar")
    learn.set_defaults(run=cmd_prior_learn)
