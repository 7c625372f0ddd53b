"""Bad input to the command line, as a new user would type it, for every subcommand.

Each case must end with exit code 2 and one line 'gradinv: error: ...' naming what is wrong (no
traceback, no hang), and must leave nothing behind: no run folder, record, prior folder or
file that was not there before. argparse's own errors (unknown option, a float where an int is
expected, a name outside ``choices``) print usage plus a line; for those only the exit code and
the absence of a traceback are checked. Every case fails before an optimisation starts.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import pickle
import shutil
import signal
from pathlib import Path

import pytest
import torch
from torch import nn

from gradinv.cli import main
from gradinv.record import open_record
from gradinv.priors import DCGANGenerator

HUGE = str(2**64)
SECONDS_PER_CASE = 30  # a case still running after this is a hang

BASES = {
    "attack": ["attack", "--model", "lenet", "--image-size", "16", "--iterations", "2",
               "--restarts", "1", "--quiet", "--device", "cpu", "--out", "{out}"],
    "record": ["attack", "--record", "{rec}", "--round", "0", "--client", "{client}",
               "--iterations", "2", "--restarts", "1", "--quiet", "--device", "cpu",
               "--out", "{out}"],
    "record-bare": ["attack", "--record", "{rec}", "--iterations", "2", "--restarts", "1",
                    "--quiet", "--device", "cpu", "--out", "{out}"],
    "demo": ["demo", "--model", "lenet", "--iterations", "2", "--restarts", "1", "--quiet",
             "--device", "cpu", "--out", "{out}"],
    "fl": ["fl", "simulate", "--record", "{out}", "--model", "lenet", "--image-size", "16",
           "--rounds", "1", "--clients", "2", "--clients-per-round", "1", "--batch-size", "1",
           "--test-images", "10", "--quiet"],
    "train": ["prior", "train", "--dataset", "default", "--epochs", "1", "--batch-size", "8",
              "--max-images", "16", "--width", "8", "--latent-dim", "8", "--quiet",
              "--out", "{out}"],
    "learn": ["prior", "learn", "--record", "{rec}", "--latent-iterations", "2",
              "--adapt-iterations", "2", "--steps", "1", "--width", "8", "--latent-dim", "8",
              "--quiet", "--device", "cpu", "--out", "{out}"],
    "none": [],
}
USER_GENERATOR = "gradinv.priors.dcgan:DCGANGenerator"  # a factory that takes no arguments

# (base, extra arguments, fragment of the one error line; None: an argparse error)
CASES = [
    # -- attack: numbers --------------------------------------------------------------------
    ("attack", ["--batch-size", "0"], "batch_size must be"),
    ("attack", ["--batch-size", "-1"], "batch_size must be"),
    ("attack", ["--batch-size", HUGE], "batch_size must be"),
    ("attack", ["--batch-size", "1.5"], None),
    ("attack", ["--batch-size", "nan"], None),
    ("attack", ["--offset", "-1"], "offset must be"),
    ("attack", ["--offset", "500"], "offset 500 is outside"),
    ("attack", ["--offset", HUGE], "offset must be"),
    ("attack", ["--image-size", "3"], "image_size must be"),
    ("attack", ["--image-size", "0"], "image_size must be"),
    ("attack", ["--image-size", HUGE], "image_size must be"),
    ("attack", ["--image-size", "1e3"], None),
    ("attack", ["--channels", "0"], "channels must be"),
    ("attack", ["--channels", "-3"], "channels must be"),
    ("attack", ["--channels", HUGE], "channels must be"),
    ("attack", ["--model", "convnet", "--width", "0"], "width must be"),
    ("attack", ["--model", "convnet", "--width", "-8"], "width must be"),
    ("attack", ["--model", "convnet", "--width", HUGE], "width must be"),
    ("attack", ["--seed", "-1"], "seed must be"),
    ("attack", ["--seed", str(2**63)], "seed must be"),
    ("attack", ["--seed", HUGE], "seed must be"),
    ("attack", ["--seed", "0.5"], None),
    ("attack", ["--iterations", "0"], "iterations must be"),
    ("attack", ["--iterations", "-5"], "iterations must be"),
    ("attack", ["--iterations", HUGE], "iterations must be"),
    ("attack", ["--iterations", "inf"], None),
    ("attack", ["--restarts", "0"], "restarts must be"),
    ("attack", ["--restarts", HUGE], "restarts must be"),
    ("attack", ["--lr", "nan"], "lr must be"),
    ("attack", ["--lr", "inf"], "lr must be"),
    ("attack", ["--lr", "-inf"], None),  # argparse reads -inf as an option
    ("attack", ["--lr=-inf"], "lr must be"),
    ("attack", ["--lr", "0"], "lr must be"),
    ("attack", ["--lr", "-0.1"], "lr must be"),
    ("attack", ["--lr", "1e999"], "lr must be"),
    ("attack", ["--lr", "fast"], None),
    ("attack", ["--tv", "nan"], "tv must be"),
    ("attack", ["--tv", "-1"], "tv must be"),
    ("attack", ["--tv", "inf"], "tv must be"),
    ("attack", ["--top-k", "0"], "top_k must be"),
    ("attack", ["--top-k", "-1"], "top_k must be"),
    ("attack", ["--top-k", HUGE], "top_k must be"),
    ("attack", ["--top-k", "1000"], "top_k 1000 is more than"),
    ("attack", ["--model", "convnet", "--bn-stats", "--bn-prior", "-1"], "bn_stats must be"),
    ("attack", ["--model", "convnet", "--bn-stats", "--bn-prior", "inf"], "bn_stats must be"),
    ("attack", ["--model", "convnet", "--bn-stats", "--bn-prior", "nan"], "bn_stats must be"),
    ("attack", ["--attack", "gias", "--latent-iterations", "0"], "latent_iterations must be"),
    ("attack", ["--attack", "gias", "--latent-iterations", "2"], "must be less than iterations"),
    ("attack", ["--attack", "gias", "--latent-iterations", HUGE], "latent_iterations must be"),
    ("attack", ["--attack", "gias", "--iterations", "1"], "must be less than iterations"),
    ("attack", ["--update", "fedavg", "--local-lr", "nan"], "FedAvg: lr must be"),
    ("attack", ["--update", "fedavg", "--local-lr", "0"], "FedAvg: lr must be"),
    ("attack", ["--update", "fedavg", "--local-lr=-inf"], "FedAvg: lr must be"),
    ("attack", ["--update", "fedavg", "--local-batch-size", "0"], "local_batch_size must be"),
    ("attack", ["--update", "fedavg", "--local-batch-size", HUGE], "local_batch_size must be"),
    ("attack", ["--update", "fedavg", "--local-epochs", "0"], "epochs must be"),
    ("attack", ["--update", "fedavg", "--local-epochs", HUGE], "epochs must be"),
    ("attack", ["--attack", "gias", "--prior", USER_GENERATOR, "--output-range", "nan", "1"],
     "output_range"),
    ("attack", ["--attack", "gias", "--prior", USER_GENERATOR, "--output-range", "1", "1"],
     "output_range"),
    ("attack", ["--attack", "gias", "--prior", USER_GENERATOR, "--output-range", "1", "-1"],
     "output_range"),
    ("attack", ["--attack", "gias", "--prior", USER_GENERATOR, "--output-range", "-inf", "1"],
     None),
    ("attack", ["--attack", "gias", "--prior", USER_GENERATOR, "--output-range", "1e999", "2"],
     "output_range"),
    ("attack", ["--attack", "gias", "--prior", USER_GENERATOR, "--output-range", "0"], None),
    ("attack", ["--attack", "gias", "--prior", USER_GENERATOR, "--latent-dim", "0"],
     "latent_dim must be"),
    ("attack", ["--attack", "gias", "--prior", "torch.nn:Identity", "--latent-dim", HUGE],
     "latent_dim must be"),
    # -- attack: unknown names --------------------------------------------------------------
    ("attack", ["--attack", "nope"], "unknown attack 'nope'"),
    ("attack", ["--attack", "GI"], "unknown attack 'GI'"),
    ("attack", ["--attack", "gi,nope"], "unknown attack 'nope'"),
    ("attack", ["--attack", "gi,gi"], "bad attack list"),
    ("attack", ["--attack", ","], "bad attack list"),
    ("attack", ["--model", "alexnet"], "unknown model"),
    ("attack", ["--model", "LeNet"], "unknown model"),
    ("attack", ["--dataset", "nope"], "unknown dataset"),
    ("attack", ["--init-scheme", "xavier"], None),
    ("attack", ["--cost", "l1"], None),
    ("attack", ["--init", "zeros"], None),
    ("attack", ["--split", "valid"], None),
    ("attack", ["--update", "fedprox"], None),
    ("attack", ["--mode", "predict"], None),
    ("attack", ["--device", "tpu"], "unknown device 'tpu'"),
    ("attack", ["--device", "meta"], "unknown device 'meta'"),
    ("attack", ["--device", "mps"], "unknown device 'mps'"),
    ("attack", ["--device", "cpu:1"], "unknown device 'cpu:1'"),
    ("attack", ["--device", ""], "unknown device ''"),
    ("attack", ["--device", "cuda:x"], "device 'cuda:x'"),
    ("attack", ["--attack", "gias", "--prior", "nope"], "unknown prior 'nope'"),
    ("attack", ["--attack", "gias", "--prior", "no_such_module_xyz:make"], "importing"),
    ("attack", ["--attack", "gias", "--prior", "gradinv.priors.dcgan:nothing"],
     "has no callable"),
    ("attack", ["--attack", "gias", "--prior", ":make"], "package.module:factory"),
    ("attack", ["--attack", "gias", "--prior", "gradinv.priors.dcgan:"], "package.module:factory"),
    ("attack", ["--attack", "gias", "--prior", "torch.nn:Linear"], "needs arguments"),
    ("attack", ["--attack", "gias", "--prior", "torch.nn:Identity", "--latent-dim", "8"],
     "must map latents"),
    ("attack", ["--attack", "gias", "--prior", "math:pi"], "has no callable"),
    ("attack", ["--attack", "gias", "--prior", "builtins:dict"], "not a torch.nn.Module"),
    ("attack", ["--attack", "gias", "--prior", "torch.nn:Tanh"], "latent size"),
    # -- attack: files and folders ----------------------------------------------------------
    ("attack", ["--attack", "gias", "--prior", "{missing}.pt"], "does not exist"),
    ("attack", ["--attack", "gias", "--prior", "{empty}"], "not a readable torch file"),
    ("attack", ["--attack", "gias", "--prior", "{corrupt_pt}"], "not a readable torch file"),
    ("attack", ["--attack", "gias", "--prior", "{emptydir}"], "is a folder"),
    ("attack", ["--attack", "gias", "--prior", "{state_pt}"], "not written by"),
    ("attack", ["--attack", "gias", "--prior", "{module_pt}"], "pickled Python objects"),
    ("attack", ["--attack", "gias", "--prior", USER_GENERATOR, "--prior-weights", "{missing}"],
     "does not exist"),
    ("attack", ["--attack", "gias", "--prior", USER_GENERATOR, "--prior-weights",
                "{corrupt_pt}"], "not a readable torch file"),
    ("attack", ["--attack", "gias", "--prior", USER_GENERATOR, "--prior-weights",
                "{other_weights}"], "another architecture"),
    ("attack", ["--dataset", "folder", "--data-dir", "{file}"], "is a file"),
    ("attack", ["--dataset", "folder", "--data-dir", "{missing}"], "does not exist"),
    ("attack", ["--dataset", "folder", "--data-dir", "{emptydir}"], "no class sub-folders"),
    ("attack", ["--dataset", "folder", "--data-dir", "{bad_images}"], "cannot read image"),
    ("attack", ["--dataset", "mnist", "--data-dir", "{emptydir}"], "missing"),
    ("attack", ["--dataset", "mnist"], "needs --data-dir"),
    ("attack", ["--dataset", "cifar10", "--data-dir", "{missing}"], "missing CIFAR file"),
    ("attack", ["--dataset", "cifar10", "--data-dir", "{bad_cifar}"], "cannot read CIFAR file"),
    ("attack", ["--dataset", "fashion-mnist", "--data-dir", "{file}"], "is a file"),
    ("attack", ["--data-dir", "{emptydir}"], "reads no --data-dir"),
    ("attack", ["--out", "{file}"], "is not a folder"),
    ("attack", ["--out", "{file}/runs"], "is not a folder"),
    ("attack", ["--out", "/proc/gradinv-bad-input/runs"], "cannot write results under"),
    # -- attack: options the run would ignore, and combinations ------------------------------
    ("attack", ["--width", "8"], "LeNet has a fixed width"),
    ("attack", ["--attack", "gi", "--prior", "fashion-mnist"], "takes 'prior'"),
    ("attack", ["--attack", "dlg", "--prior", "{missing}.pt"], "takes 'prior'"),
    ("attack", ["--attack", "gias", "--init", "noise"], "takes 'init'"),
    ("attack", ["--attack", "dlg", "--tv", "0.1"], "takes 'tv'"),
    ("attack", ["--attack", "gi", "--latent-iterations", "1"], "takes 'latent_iterations'"),
    ("attack", ["--attack", "dlg", "--model", "convnet", "--bn-stats", "--bn-prior", "0.1"],
     "takes 'bn_stats'"),
    ("attack", ["--bn-prior", "0.1"], "needs the statistics"),
    ("attack", ["--bn-stats", "--bn-prior", "0.1"], "no BatchNorm layers"),
    ("attack", ["--prior-weights", "g.pt", "--attack", "gias"], "only applies to --prior"),
    ("attack", ["--latent-dim", "8", "--attack", "gias", "--prior", "fashion-mnist"],
     "only applies to --prior"),
    ("attack", ["--output-range", "0", "1", "--attack", "gias"], "only applies to --prior"),
    ("attack", ["--local-lr", "0.1"], "only apply to --update fedavg"),
    ("attack", ["--local-batch-size", "2"], "only apply to --update fedavg"),
    ("attack", ["--local-epochs", "2"], "only apply to --update fedavg"),
    ("attack", ["--unknown-hparams"], "--unknown-hparams only applies to --update fedavg"),
    ("attack", ["--round", "0"], "--round only applies to --record"),
    ("attack", ["--client", "0"], "--client only applies to --record"),
    ("attack", ["--dataset", "digits", "--split", "train"], "has no separate train and test"),
    ("attack", ["--defense", "nope"], "unknown defense 'nope'"),
    ("attack", ["--defense", "noise:sigma"], "bad defense"),
    ("attack", ["--defense", "noise:sigma=-1"], "sigma must be"),
    ("attack", ["--defense", "noise:sigma=nan"], "sigma must be"),
    ("attack", ["--defense", "noise:sigma=1e999"], "sigma must be"),
    ("attack", ["--defense", "noise:bogus=1"], "defense noise takes no setting 'bogus'; it takes"),
    ("attack", ["--defense", f"noise:seed={HUGE}"], "seed must be"),
    ("attack", ["--defense-known"], "--defense-known says"),
    ("attack", ["--batch-size", "11"], "larger than the number of classes"),
    ("attack", ["--batch-size", "9", "--offset", "495"], "larger than what"),
    # -- attack --record --------------------------------------------------------------------
    ("record", ["--record", "{missing}"], "no record at"),
    ("record", ["--record", "{emptydir}"], "is empty"),
    ("record", ["--record", "{file}"], "not a directory"),
    ("record", ["--record", "{not_record}"], "has no record.json"),
    ("record", ["--record", "{rec_bad_json}"], "is not valid JSON"),
    ("record", ["--record", "{rec_wrong_format}"], "does not describe a gradinv-fl-record"),
    ("record", ["--record", "{rec_version}"], "format version"),
    ("record", ["--record", "{rec_no_model}"], "is malformed"),
    ("record", ["--record", "{rec_manifest_garbage}"], "is not a JSON object"),
    ("record", ["--record", "{rec_manifest_entry}"], "is malformed"),
    ("record", ["--record", "{rec_no_manifest}"], "is missing or unreadable"),
    ("record", ["--record", "{rec_missing_update}"], "is missing"),
    ("record", ["--record", "{rec_tampered_update}"], "does not match its sha256"),
    ("record", ["--record", "{rec_missing_broadcast}"], "is missing"),
    ("record", ["--record", "{rec_tampered_private}"], "does not match its sha256"),
    ("record", ["--record", "{rec_no_rounds}"], "complete rounds: none"),
    ("record", ["--round", "5"], "has no update of client"),
    ("record", ["--round", "-1"], "has no update of client"),
    ("record", ["--round", HUGE], "has no update of client"),
    ("record", ["--round", "0.5"], None),
    ("record", ["--client", "{absent_client}"], "has no update of client"),
    ("record", ["--client", "-1"], "has no update of client"),
    ("record", ["--client", HUGE], "has no update of client"),
    ("record-bare", ["--client", "0"], "needs --round and --client"),
    ("record-bare", ["--round", "0"], "needs --round and --client"),
    ("record", ["--model", "convnet"], "--model does not apply to --record"),
    ("record", ["--width", "8"], "--width does not apply to --record"),
    ("record", ["--init-scheme", "pytorch"], "--init-scheme does not apply to --record"),
    ("record", ["--dataset", "default"], "--dataset does not apply to --record"),
    ("record", ["--data-dir", "{emptydir}"], "--data-dir does not apply to --record"),
    ("record", ["--split", "train"], "--split does not apply to --record"),
    ("record", ["--batch-size", "2"], "--batch-size does not apply to --record"),
    ("record", ["--offset", "3"], "--offset does not apply to --record"),
    ("record", ["--allow-repeated-labels"], "--allow-repeated-labels does not apply"),
    ("record", ["--image-size", "32"], "--image-size does not apply to --record"),
    ("record", ["--channels", "1"], "--channels does not apply to --record"),
    ("record", ["--update", "fedavg"], "--update does not apply to --record"),
    ("record", ["--local-lr", "0.1"], "--local-lr does not apply to --record"),
    ("record", ["--unknown-labels"], "--unknown-labels does not apply to --record"),
    ("record", ["--unknown-count"], "--unknown-count does not apply to --record"),
    ("record", ["--bn-stats"], "--bn-stats does not apply to --record"),
    ("record", ["--unknown-hparams"], "--unknown-hparams does not apply to --record"),
    ("record", ["--mode", "train"], "--mode does not apply to --record"),
    ("record", ["--defense", "clip"], "--defense does not apply to --record"),
    ("record", ["--defense-known"], "--defense-known does not apply to --record"),
    ("record", ["--bn-prior", "0.1"], "needs the statistics"),
    ("record", ["--attack", "gi", "--prior", "fashion-mnist"], "takes 'prior'"),
    ("record", ["--attack", "nope"], "unknown attack"),
    ("record", ["--iterations", "0"], "iterations must be"),
    ("record", ["--top-k", "1000"], "top_k 1000 is more than"),
    ("record", ["--seed", "-1"], "seed must be"),
    ("record", ["--device", "tpu"], "unknown device"),
    ("record", ["--out", "{file}"], "is not a folder"),
    # -- demo -------------------------------------------------------------------------------
    ("demo", ["--iterations", "0"], "iterations must be"),
    ("demo", ["--iterations", "1"], "must be less than iterations"),
    ("demo", ["--iterations", HUGE], "iterations must be"),
    ("demo", ["--iterations", "nan"], None),
    ("demo", ["--restarts", "0"], "restarts must be"),
    ("demo", ["--restarts", "-1"], "restarts must be"),
    ("demo", ["--restarts", HUGE], "restarts must be"),
    ("demo", ["--model", "alexnet"], "unknown model"),
    ("demo", ["--seed", "-1"], "seed must be"),
    ("demo", ["--device", "tpu"], "unknown device"),
    ("demo", ["--out", "{file}"], "is not a folder"),
    ("demo", ["--attack", "gi"], None),
    # -- list and the parser itself ---------------------------------------------------------
    ("none", ["list", "--all"], None),
    ("none", ["list", "attacks"], None),
    ("none", [], None),
    ("none", ["attak"], None),
    ("none", ["fl"], None),
    ("none", ["prior"], None),
    ("none", ["fl", "simulate"], None),
    ("none", ["prior", "learn"], None),
    # -- fl simulate ------------------------------------------------------------------------
    ("fl", ["--rounds", "0"], "rounds must be"),
    ("fl", ["--rounds", "-1"], "rounds must be"),
    ("fl", ["--rounds", HUGE], "rounds must be"),
    ("fl", ["--clients", "0"], "num_clients must be"),
    ("fl", ["--clients", HUGE], "num_clients must be"),
    ("fl", ["--clients", "3000"], "3000 clients"),
    ("fl", ["--clients-per-round", "0"], "clients_per_round must be"),
    ("fl", ["--clients-per-round", "3"], "clients_per_round must be"),
    ("fl", ["--batch-size", "0"], "batch_size must be"),
    ("fl", ["--batch-size", "-1"], "batch_size must be"),
    ("fl", ["--test-images", "0"], "test_images must be"),
    ("fl", ["--test-images", "501"], "test_images 501 is more than"),
    ("fl", ["--test-images", HUGE], "test_images must be"),
    ("fl", ["--image-size", "3"], "image_size must be"),
    ("fl", ["--image-size", HUGE], "image_size must be"),
    ("fl", ["--channels", "0"], "channels must be"),
    ("fl", ["--channels", HUGE], "channels must be"),
    ("fl", ["--seed", "-1"], "seed must be"),
    ("fl", ["--seed", HUGE], "seed must be"),
    ("fl", ["--rounds", "1.5"], None),
    ("fl", ["--width", "8"], "LeNet has a fixed width"),
    ("fl", ["--model", "convnet", "--width", "0"], "width must be"),
    ("fl", ["--model", "convnet", "--width", HUGE], "width must be"),
    ("fl", ["--partition", "dirichlet", "--alpha", "0"], "alpha must be"),
    ("fl", ["--partition", "dirichlet", "--alpha", "nan"], "alpha must be"),
    ("fl", ["--partition", "dirichlet", "--alpha", "inf"], "alpha must be"),
    ("fl", ["--partition", "dirichlet", "--alpha", "-1"], "alpha must be"),
    ("fl", ["--alpha", "0.5"], "--alpha only applies to --partition dirichlet"),
    ("fl", ["--classes-per-client", "2"], "--classes-per-client only applies to --partition"),
    ("fl", ["--partition", "classes", "--classes-per-client", "0"], "classes_per_client must"),
    ("fl", ["--partition", "classes", "--classes-per-client", "11"], "classes_per_client must"),
    ("fl", ["--server-lr", "0"], "server_lr must be"),
    ("fl", ["--server-lr", "nan"], "server_lr must be"),
    ("fl", ["--server-lr", "inf"], "server_lr must be"),
    ("fl", ["--server-lr", "-1"], "server_lr must be"),
    ("fl", ["--update", "fedavg", "--server-lr", "0.1"], "--server-lr only applies to"),
    ("fl", ["--local-lr", "0.1"], "only apply to --update fedavg"),
    ("fl", ["--local-epochs", "2"], "only apply to --update fedavg"),
    ("fl", ["--update", "fedavg", "--local-lr", "nan"], "FedAvg: lr must be"),
    ("fl", ["--update", "fedavg", "--local-epochs", HUGE], "epochs must be"),
    ("fl", ["--update", "fedavg", "--local-batch-size", "0"], "local_batch_size must be"),
    ("fl", ["--unknown-hparams"], "--unknown-hparams only applies to --update fedavg"),
    ("fl", ["--model", "alexnet"], "unknown model"),
    ("fl", ["--dataset", "digits"], "no separate train and test split"),
    ("fl", ["--dataset", "nope"], "unknown dataset"),
    ("fl", ["--dataset", "mnist"], "needs --data-dir"),
    ("fl", ["--dataset", "mnist", "--data-dir", "{file}"], "is a file"),
    ("fl", ["--dataset", "mnist", "--data-dir", "{emptydir}"], "missing"),
    ("fl", ["--data-dir", "{emptydir}"], "reads no --data-dir"),
    ("fl", ["--init-scheme", "xavier"], None),
    ("fl", ["--partition", "random"], None),
    ("fl", ["--record", "{file}"], "is not a folder"),
    ("fl", ["--record", "{not_record}"], "has no record.json"),
    ("fl", ["--record", "{rec}", "--seed", "1"], "written with other settings"),
    ("fl", ["--record", "{rec_manifest_garbage}"], "is not a JSON object"),
    ("fl", ["--record", "/proc/gradinv-bad-input/rec"], "cannot write results under"),
    # -- prior train ------------------------------------------------------------------------
    ("train", ["--epochs", "0"], "epochs must be"),
    ("train", ["--epochs", HUGE], "epochs must be"),
    ("train", ["--batch-size", "0"], "batch_size must be"),
    ("train", ["--batch-size", "17"], "fewer images than one batch"),
    ("train", ["--lr", "0"], "lr must be"),
    ("train", ["--lr", "nan"], "lr must be"),
    ("train", ["--lr", "inf"], "lr must be"),
    ("train", ["--lr", "-1"], "lr must be"),
    ("train", ["--latent-dim", "0"], "latent_dim must be"),
    ("train", ["--latent-dim", HUGE], "latent_dim must be"),
    ("train", ["--width", "0"], "width must be"),
    ("train", ["--width", HUGE], "width must be"),
    ("train", ["--image-size", "48"], None),
    ("train", ["--max-images", "0"], "max_images must be"),
    ("train", ["--max-images", "3000"], "max_images 3000 is more than"),
    ("train", ["--max-images", HUGE], "max_images must be"),
    ("train", ["--seed", "-1"], "seed must be"),
    ("train", ["--dataset", "nope"], "unknown dataset"),
    ("train", ["--dataset", "digits"], "no separate train and test split"),
    ("train", ["--dataset", "mnist"], "needs --data-dir"),
    ("train", ["--dataset", "mnist", "--data-dir", "{emptydir}"], "missing"),
    ("train", ["--data-dir", "{emptydir}"], "reads no --data-dir"),
    ("train", ["--out", "{file}"], "is not a folder"),
    ("train", ["--out", "/proc/gradinv-bad-input/prior"], "cannot write results under"),
    ("train", ["--out", "{corrupt_checkpoint}"], "not a readable torch file"),
    ("train", ["--out", "{foreign_checkpoint}"], "written with other settings"),
    # -- prior learn ------------------------------------------------------------------------
    ("learn", ["--record", "{missing}"], "no record at"),
    ("learn", ["--record", "{emptydir}"], "is empty"),
    ("learn", ["--record", "{file}"], "not a directory"),
    ("learn", ["--record", "{rec_missing_update}"], "is missing"),
    ("learn", ["--record", "{rec_tampered_update}"], "does not match its sha256"),
    ("learn", ["--record", "{rec_no_rounds}"], "at least one observed update"),
    ("learn", ["--latent-iterations", "0"], "latent_iterations must be"),
    ("learn", ["--latent-iterations", HUGE], "latent_iterations must be"),
    ("learn", ["--latent-iterations", "1.5"], None),
    ("learn", ["--adapt-iterations", "0"], "adapt_iterations must be"),
    ("learn", ["--steps", "0"], "steps must be"),
    ("learn", ["--steps", HUGE], "steps must be"),
    ("learn", ["--width", "0"], "width must be"),
    ("learn", ["--width", HUGE], "width must be"),
    ("learn", ["--latent-dim", HUGE], "latent_dim must be"),
    ("learn", ["--image-size", "48"], "32 or 64"),
    ("learn", ["--image-size", "16"], "image_size"),
    ("learn", ["--channels", "0"], "channels must be"),
    ("learn", ["--latent-lr", "nan"], "latent_lr must be"),
    ("learn", ["--adapt-lr", "0"], "adapt_lr must be"),
    ("learn", ["--meta-lr", "inf"], "meta_lr must be"),
    ("learn", ["--tv", "-1"], "tv must be"),
    ("learn", ["--latent-norm", "nan"], "latent_norm must be"),
    ("learn", ["--restarts", "0"], "restarts must be"),
    ("learn", ["--restarts", HUGE], "restarts must be"),
    ("learn", ["--sample-every", "0"], "sample_every must be"),
    ("learn", ["--checkpoint-every", "-1"], "checkpoint_every must be"),
    ("learn", ["--seed", "-1"], "seed must be"),
    ("learn", ["--device", "tpu"], "unknown device"),
    ("learn", ["--out", "{file}"], "is not a folder"),
    ("learn", ["--out", "/proc/gradinv-bad-input/giml"], "cannot write results under"),
    ("learn", ["--out", "{corrupt_checkpoint}"], "is not a readable torch file"),
]


# -- what the cases point at ---------------------------------------------------------------

def _record_copy(tmp: Path, rec: Path, name: str, damage) -> Path:
    """A copy of the shared record with ``damage(copy)`` applied."""
    copy = tmp / name
    shutil.copytree(rec, copy)
    damage(copy)
    return copy


def _manifest_lines(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]


def _first_entry_file(root: Path, key: str) -> Path:
    return root / _manifest_lines(root)[0][key]["file"]


def _edit_meta(change):
    def damage(root: Path) -> None:
        meta = json.loads((root / "record.json").read_text())
        change(meta)
        (root / "record.json").write_text(json.dumps(meta))
    return damage


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def _private_file(root: Path) -> Path:
    line = (root / "private" / "manifest.jsonl").read_text().splitlines()[0]
    return root / json.loads(line)["file"]


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _torch_file(path: Path, content) -> Path:
    torch.save(content, path)
    return path


def _dir(path: Path) -> Path:
    path.mkdir()
    return path


RECORD_DAMAGE = {
    "rec_bad_json": lambda r: (r / "record.json").write_text("{not json"),
    "rec_wrong_format": _edit_meta(lambda m: m.update(format="something-else")),
    "rec_version": _edit_meta(lambda m: m.update(version=99)),
    "rec_no_model": _edit_meta(lambda m: m.pop("model")),
    "rec_manifest_garbage": lambda r: (r / "manifest.jsonl").write_text("garbage\n"),
    "rec_manifest_entry": lambda r: (r / "manifest.jsonl").write_text(
        '{"round": 0}\n{"round_complete": 0}\n'),
    "rec_no_manifest": lambda r: (r / "manifest.jsonl").unlink(),
    "rec_missing_update": lambda r: _first_entry_file(r, "update").unlink(),
    "rec_tampered_update": lambda r: _flip_last_byte(_first_entry_file(r, "update")),
    "rec_missing_broadcast": lambda r: _first_entry_file(r, "broadcast").unlink(),
    "rec_tampered_private": lambda r: _flip_last_byte(_private_file(r)),
    "rec_no_rounds": lambda r: (r / "manifest.jsonl").write_text(""),
}

FIXTURES = {
    "missing": lambda tmp, rec: tmp / "missing",
    "file": lambda tmp, rec: _write(tmp / "file.txt", b"not what you think\n"),
    "empty": lambda tmp, rec: _write(tmp / "empty.pt", b""),
    "corrupt_pt": lambda tmp, rec: _write(tmp / "corrupt.pt", b"PK\x03\x04 not a zip"),
    "emptydir": lambda tmp, rec: _dir(tmp / "emptydir"),
    "not_record": lambda tmp, rec: _write(tmp / "not_record" / "notes.txt", b"x").parent,
    "state_pt": lambda tmp, rec: _torch_file(tmp / "state.pt", {"w": torch.zeros(2)}),
    "module_pt": lambda tmp, rec: _torch_file(tmp / "module.pt", nn.Linear(2, 2)),
    "other_weights": lambda tmp, rec: _torch_file(
        tmp / "other.pt", DCGANGenerator(latent_dim=4, width=4).state_dict()),
    "bad_images": lambda tmp, rec: _write(tmp / "images" / "a" / "x.png", b"not a png").parents[1],
    "bad_cifar": lambda tmp, rec: _write(tmp / "cifar" / "test_batch",
                                         pickle.dumps([1, 2, 3])).parent,
    "corrupt_checkpoint": lambda tmp, rec: _write(tmp / "old" / "checkpoint.pt", b"junk").parent,
    "foreign_checkpoint": lambda tmp, rec: _torch_file(
        _dir(tmp / "foreign") / "checkpoint.pt",
        {"config": {"dataset": "other"}, "epoch": 1, "generator": {}, "discriminator": {},
         "opt_g": {}, "opt_d": {}, "rng": torch.get_rng_state()}).parent,
    **{name: (lambda tmp, rec, name=name, damage=damage:
              _record_copy(tmp, rec, name, damage))
       for name, damage in RECORD_DAMAGE.items()},
}


@pytest.fixture(scope="session")
def shared_record(tmp_path_factory) -> tuple[Path, int, int]:
    """A one-round LeNet federation record (clients 0 and 1, one observed), made by the CLI:
    (path, the observed client, the client not observed)."""
    path = tmp_path_factory.mktemp("shared") / "rec"
    argv = [a.replace("{out}", str(path)) for a in BASES["fl"]]
    with contextlib.redirect_stdout(None):
        assert main(argv) == 0
    (observed,) = {e.client_id for e in open_record(path).entries()}
    return path, observed, 1 - observed


def _argv(base: str, extra: list[str], tmp: Path, shared: tuple[Path, int, int]) -> list[str]:
    """The case's command line with every {placeholder} made real under ``tmp``."""
    rec, client, absent = shared
    values = {"out": tmp / "out", "rec": rec, "client": client, "absent_client": absent}
    argv = []
    for arg in BASES[base] + extra:
        for name, make in FIXTURES.items():
            if "{" + name + "}" in arg and name not in values:
                values[name] = make(tmp, rec)
        argv.append(arg.format(**{k: str(v) for k, v in values.items()}))
    return argv


def _snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` with a hash of its content."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            if p.is_file() else "dir" for p in sorted(root.rglob("*"))}


@contextlib.contextmanager
def _deadline(seconds: int):
    """Fail a case that runs for longer than ``seconds`` (it would be a hang, or an attack)."""
    def stop(*_):
        raise TimeoutError(f"still running after {seconds} s")
    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _run(argv: list[str], capsys) -> tuple[int, str]:
    """Exit code and stderr of ``gradinv argv``, run in-process (argparse exits by SystemExit)."""
    try:
        with _deadline(SECONDS_PER_CASE):
            code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


def _case_id(case) -> str:
    base, extra, _ = case
    return f"{base}:{' '.join(extra) or '-'}"


def test_the_table_covers_every_subcommand():
    assert len(CASES) >= 150 and len({_case_id(c) for c in CASES}) == len(CASES)
    assert {base for base, _, _ in CASES} == set(BASES)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_bad_input_gives_one_line_and_leaves_nothing(case, tmp_path, shared_record, capsys):
    base, extra, fragment = case
    argv = _argv(base, extra, tmp_path, shared_record)
    before, record_before = _snapshot(tmp_path), _snapshot(shared_record[0])
    code, err = _run(argv, capsys)
    assert code == 2, err
    assert "Traceback" not in err
    if fragment is not None:
        assert err.startswith("gradinv: error: ") and len(err.splitlines()) == 1, err
        assert fragment in err, err
    assert _snapshot(tmp_path) == before, "the failed run left files behind"
    assert _snapshot(shared_record[0]) == record_before, "the failed run changed the record"
