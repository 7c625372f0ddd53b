"""Label benchmark (issue 20): which classes, and how many images of each, an update reveals.

Every registered label method (``gradinv.attacks.labels``) reads the labels of client batches
off their observed updates. Scored per batch, as in iLRG (Ma et al., ICLR 2023): existence
accuracy (the share of the classes whose presence is called right) and number accuracy (the
share of the batch's labels recovered as a multiset). The grid: B = 8, 16, 64, 256 images of
the embedded Fashion-MNIST train split, labels drawn at random with repeats ('random') or
from two random classes ('non-iid'); ConvNet and ResNet-18 (Kaiming init); BatchNorm in eval
and in train mode; the model untrained and after 10 and 50 rounds of a FedAvg federation
trained in that mode; FedSGD, and FedAvg with 1 and 5 local epochs (lr 0.05, local batch 16).
Then GI and GIAS at B = 8 and 16 (held-out test images, random labels with repeats, FedSGD,
untrained model) with the labels known and with them inferred by the default method.

    python benchmarks/labels.py --quick   # 2 CPU cores: width 16, 2 batches per cell, 200-step
                                          # attacks on a ConvNet (a few hours on a shared machine)
    python benchmarks/labels.py           # the models' own widths, 5 batches per cell, 2,000-step
                                          # attacks on ResNet-18 (for a GPU)

Prints the tables and the issue's targets, writes results.json (every batch, every method)
under --out. The trained federations' states are kept in --out/states and reused.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from gradinv.attacks import labels
from gradinv.attacks.labels import rlu
from gradinv.attacks.labels.base import counts_to_labels
from gradinv.audit import AuditConfig, PriorSpec, run_config
from gradinv.data import ImageDataset, load_dataset, to_model_input
from gradinv.fl import compute_update, observe
from gradinv.fl.federation import Federation, FederationConfig
from gradinv.metrics import label_accuracy, label_existence_accuracy
from gradinv.models import DEFAULT_WIDTH
from gradinv.types import FedAvgConfig, PrivateBatch, ThreatModel

MODELS = ("convnet", "resnet18")
MODES = ("eval", "train")
ROUNDS = (0, 10, 50)
BATCH_SIZES = (8, 16, 64, 256)
DISTRIBUTIONS = ("random", "non-iid")
UPDATES = {"fedsgd": None, "fedavg-1": 1, "fedavg-5": 5}
LOCAL_LR, LOCAL_BATCH = 0.05, 16
BASELINES = ("count", "idlg", "yin", "llg")
IMAGE_SIZE, NUM_CLASSES = 28, 10

SETTINGS = {
    "quick": dict(width=16, repeats=2, clients_per_round=2, psnr_model="convnet",
                  psnr_width=16, psnr_batches=3, budget=200, latent_share=0.5, gias_lr=1e-5),
    "full": dict(width=None, repeats=5, clients_per_round=4, psnr_model="resnet18",
                 psnr_width=64, psnr_batches=4, budget=2000, latent_share=0.35, gias_lr=1e-4),
}


def federation_states(model: str, mode: str, args: argparse.Namespace) -> dict:
    """The global model's state untrained and after each of ROUNDS (a FedAvg federation of 10
    iid clients, batches of 64, 2 local epochs, trained in ``mode``), with its accuracy on 200
    test images; cached under --out/states."""
    width = args.width or DEFAULT_WIDTH[model]
    cache = Path(args.out) / "states" / f"{model}-{mode}-w{width}-s{args.seed}.pt"
    config = FederationConfig(model=model, width=width, image_size=IMAGE_SIZE,
                              num_clients=10, clients_per_round=args.clients_per_round,
                              rounds=max(ROUNDS), update="fedavg", batch_size=64,
                              fedavg=FedAvgConfig(lr=LOCAL_LR, local_batch_size=LOCAL_BATCH,
                                                  epochs=2),
                              threat=ThreatModel(model_mode=mode), store_private=False,
                              test_images=200, seed=args.seed)
    if cache.exists():
        saved = torch.load(cache, weights_only=True)
        return {"states": saved["states"], "accuracy": saved["accuracy"], "config": config}
    federation = Federation(config)
    states = {0: {k: v.clone() for k, v in federation.model.state_dict().items()}}
    accuracy = {}

    def keep(round_index: int, state: dict, acc: float) -> None:
        if round_index + 1 in ROUNDS:
            states[round_index + 1] = {k: v.clone() for k, v in state.items()}
            accuracy[round_index + 1] = acc

    started = time.monotonic()
    federation.run(on_round=keep, progress=False, log=lambda _: None)
    print(f"federation {model} {mode}: test accuracy {accuracy} "
          f"({time.monotonic() - started:.0f} s)", flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"states": states, "accuracy": accuracy}, cache)
    return {"states": states, "accuracy": accuracy, "config": config}


def draw_batch(data: ImageDataset, size: int, distribution: str,
               rng: np.random.Generator) -> PrivateBatch:
    """``size`` images with labels drawn at random (repeats allowed) from all classes or from
    two of them; each image drawn without replacement from its class."""
    classes = (np.arange(NUM_CLASSES) if distribution == "random"
               else rng.choice(NUM_CLASSES, 2, replace=False))
    wanted = rng.choice(classes, size)
    index = np.empty(size, dtype=np.int64)
    for c in np.unique(wanted):
        members = np.flatnonzero(data.labels.numpy() == c)
        slots = np.flatnonzero(wanted == c)
        index[slots] = rng.choice(members, len(slots), replace=False)
    chosen = torch.from_numpy(index)
    return PrivateBatch(to_model_input(data.images[chosen], IMAGE_SIZE, 1), data.labels[chosen])


def score_methods(model: torch.nn.Module, batch: PrivateBatch, *, mode: str,
                  epochs: int | None) -> dict[str, tuple[float, float]]:
    """Every method's (existence, number) accuracy on ``batch``'s update."""
    fedavg = None if epochs is None else FedAvgConfig(lr=LOCAL_LR, local_batch_size=LOCAL_BATCH,
                                                      epochs=epochs)
    update = compute_update(model, batch, kind="fedsgd" if epochs is None else "fedavg",
                            fedavg=fedavg, mode=mode)
    observation = observe(update, ThreatModel(labels_known=False, model_mode=mode))
    scores = {}
    for method in labels.available():
        got = labels.infer_labels(model, observation, len(batch.labels),
                                  image_shape=(1, IMAGE_SIZE, IMAGE_SIZE), method=method).labels
        scores[method] = (label_existence_accuracy(got, batch.labels, NUM_CLASSES),
                          label_accuracy(got, batch.labels, NUM_CLASSES))
    return scores


def label_grid(args: argparse.Namespace, save: Callable[[list[dict], dict], None]
               ) -> tuple[list[dict], dict]:
    """Every cell of the grid; ``save`` is called with the rows so far after each round's
    cells, so an interrupted run keeps what it measured."""
    data = load_dataset("default", split="train")
    rows, accuracy = [], {}
    for model_name in MODELS:
        for mode in MODES:
            trained = federation_states(model_name, mode, args)
            accuracy[f"{model_name}-{mode}"] = trained["accuracy"]
            model = Federation(trained["config"]).model
            for round_index in ROUNDS:
                model.load_state_dict(trained["states"][round_index])
                started = time.monotonic()
                for update, epochs in UPDATES.items():
                    for distribution in DISTRIBUTIONS:
                        for size in BATCH_SIZES:
                            for repeat in range(args.repeats):
                                rng = np.random.default_rng(
                                    [args.seed, size, repeat, DISTRIBUTIONS.index(distribution)])
                                batch = draw_batch(data, size, distribution, rng)
                                for method, (existence, number) in score_methods(
                                        model, batch, mode=mode, epochs=epochs).items():
                                    rows.append({"model": model_name, "mode": mode,
                                                 "round": round_index, "update": update,
                                                 "distribution": distribution, "B": size,
                                                 "repeat": repeat, "method": method,
                                                 "existence": existence, "number": number})
                print(f"{model_name} {mode} round {round_index}: "
                      f"{time.monotonic() - started:.0f} s", flush=True)
                save(rows, accuracy)
    return rows, accuracy


def mean(rows: list[dict], key: str, **where: object) -> float:
    values = [r[key] for r in rows if all(r[k] == v for k, v in where.items())]
    return statistics.fmean(values) if values else float("nan")


def print_grid(rows: list[dict]) -> None:
    methods = sorted(labels.available())
    print("\nExistence / number accuracy (%), mean over both label distributions, B = "
          f"{', '.join(map(str, BATCH_SIZES))} and the batches of each cell:")
    print(f"{'model':9s} {'mode':5s} {'round':>5s} {'update':9s} "
          + " ".join(f"{m:>11s}" for m in methods))
    for model in MODELS:
        for mode in MODES:
            for round_index in ROUNDS:
                for update in UPDATES:
                    where = dict(model=model, mode=mode, round=round_index, update=update)
                    cells = [f"{100 * mean(rows, 'existence', method=m, **where):5.1f}/"
                             f"{100 * mean(rows, 'number', method=m, **where):5.1f}"
                             for m in methods]
                    print(f"{model:9s} {mode:5s} {round_index:5d} {update:9s} " + " ".join(cells))


def target_untrained(rows: list[dict]) -> None:
    """Untrained ResNet-18, FedSGD, every B: existence >= 99 %, number >= 96 % (iLRG)."""
    print("\nTarget 1: untrained ResNet-18, FedSGD: existence >= 99 %, number >= 96 % "
          "(per B, mean over modes, distributions and batches)")
    for method in ("rlu", "ilrg", "llg"):
        for size in BATCH_SIZES:
            where = dict(model="resnet18", round=0, update="fedsgd", method=method, B=size)
            cell = [r for r in rows if all(r[k] == v for k, v in where.items())]
            if not cell:
                continue
            existence, number = mean(cell, "existence"), mean(cell, "number")
            met = existence >= 0.99 and number >= 0.96
            worst = min((r["number"], r["mode"], r["distribution"]) for r in cell)
            print(f"  {method:5s} B={size:3d}: existence {100 * existence:5.1f} %, number "
                  f"{100 * number:5.1f} % (worst batch {100 * worst[0]:.1f} %, {worst[1]}, "
                  f"{worst[2]}): {'met' if met else 'MISSED'}")


def target_fedavg(rows: list[dict]) -> None:
    """FedAvg with 5 local epochs on a trained model: rlu better than every baseline."""
    print("\nTarget 2: FedAvg, 5 local epochs, trained model: rlu's number accuracy vs the best "
          "simpler baseline (mean over B and batches)")
    for model in MODELS:
        for mode in MODES:
            for round_index in ROUNDS[1:]:
                for distribution in DISTRIBUTIONS:
                    where = dict(model=model, mode=mode, round=round_index, update="fedavg-5",
                                 distribution=distribution)
                    ours = mean(rows, "number", method="rlu", **where)
                    best, name = max((mean(rows, "number", method=b, **where), b)
                                     for b in BASELINES)
                    print(f"  {model:9s} {mode:5s} round {round_index:2d} {distribution:8s}: "
                          f"rlu {100 * ours:5.1f} %, best baseline {name} {100 * best:5.1f} % "
                          f"({'better' if ours > best else 'NOT better'})")


def mean_prediction_probe(args: argparse.Namespace) -> None:
    """Why rlu falls behind on trained models: its estimate of the mean prediction along the
    local steps comes from noise inputs. The same counts with the client's own images as the
    inputs (an oracle no server has) and with 64 held-out test images (auxiliary data, as RLU
    proper assumes), on the grid's FedAvg-5 cells after 50 rounds."""
    data, test = load_dataset("default", split="train"), load_dataset("default", split="test")
    auxiliary = draw_batch(test, 64, "random", np.random.default_rng(123)).images
    shape = (1, IMAGE_SIZE, IMAGE_SIZE)
    fedavg = FedAvgConfig(lr=LOCAL_LR, local_batch_size=LOCAL_BATCH, epochs=5)
    print("\nrlu's number accuracy (%) by the inputs of its mean prediction, FedAvg 5 epochs, "
          "after 50 rounds (mean over B and batches):\n"
          f"{'model':9s} {'mode':5s} {'labels':8s} {'noise':>6s} {'client':>7s} {'test':>6s}")
    for model_name in MODELS:
        for mode in MODES:
            trained = federation_states(model_name, mode, args)
            model = Federation(trained["config"]).model
            model.load_state_dict(trained["states"][ROUNDS[-1]])
            for distribution in DISTRIBUTIONS:
                scores: dict[str, list[float]] = {"noise": [], "client": [], "test": []}
                for size in BATCH_SIZES:
                    for repeat in range(args.repeats):
                        rng = np.random.default_rng(
                            [args.seed, size, repeat, DISTRIBUTIONS.index(distribution)])
                        batch = draw_batch(data, size, distribution, rng)
                        update = compute_update(model, batch, kind="fedavg", fedavg=fedavg,
                                                mode=mode)
                        problem = labels.LabelProblem(
                            model, observe(update, ThreatModel(labels_known=False,
                                                               model_mode=mode)), size, shape)
                        for name, images in (("noise", None), ("client", batch.images),
                                             ("test", auxiliary)):
                            predictions = rlu.trajectory_predictions(problem, images)
                            got = counts_to_labels(
                                rlu.counts_from_predictions(problem, predictions))
                            scores[name].append(label_accuracy(got, batch.labels, NUM_CLASSES))
                print(f"{model_name:9s} {mode:5s} {distribution:8s} "
                      + " ".join(f"{100 * statistics.fmean(v):{w}.1f}"
                                 for v, w in zip(scores.values(), (6, 7, 6))), flush=True)


def psnr_batch(data: ImageDataset, size: int, index: int) -> ImageDataset:
    """Held-out test images with random labels (repeats allowed), as a dataset of exactly
    that batch (run_config takes its first ``size`` images)."""
    batch = draw_batch(data, size, "random", np.random.default_rng([7, size, index]))
    return ImageDataset("labels-benchmark", batch.images, batch.labels, NUM_CLASSES)


def psnr_grid(args: argparse.Namespace) -> list[dict]:
    """GI and GIAS with the labels known and inferred (--label-method auto), same batch,
    same seed, same budget."""
    data = load_dataset("default", split="test")
    settings = {"gi": {"iterations": args.budget},
                "gias": {"iterations": args.budget,
                         "latent_iterations": int(args.budget * args.latent_share),
                         "lr": args.gias_lr}}
    rows = []
    for size in (8, 16):
        for index in range(args.psnr_batches):
            batch = psnr_batch(data, size, index)
            for known in (True, False):
                config = AuditConfig(attack="gi,gias", model=args.psnr_model,
                                     width=args.psnr_width, dataset="default", image_size=32,
                                     channels=1, batch_size=size, distinct_labels=False,
                                     threat=ThreatModel(labels_known=known),
                                     hyperparameters={"restarts": 1}, attack_settings=settings,
                                     prior=PriorSpec("fashion-mnist"), model_seed=args.seed,
                                     attack_seed=index, device=args.device)
                run = run_config(config, data=batch)
                for attack, outcome in run.outcomes.items():
                    rows.append({"B": size, "batch": index, "labels": "true" if known
                                 else "inferred", "attack": attack,
                                 "psnr": outcome.scores.mean_psnr,
                                 "number": outcome.scores.label_accuracy,
                                 "existence": outcome.scores.label_existence_accuracy,
                                 "method": outcome.reconstruction.extras.get("label_method")})
            print(f"psnr B={size} batch {index}: " + ", ".join(
                f"{r['attack']} {r['labels']} {r['psnr']:.2f} dB" for r in rows[-4:]),
                flush=True)
    return rows


def print_psnr(rows: list[dict]) -> None:
    print("\nTarget 3: PSNR (dB) with true vs inferred labels, same batch and seed "
          "(mean over batches; number accuracy of the inferred labels)")
    for size in (8, 16):
        for attack in ("gi", "gias"):
            pairs = [(t["psnr"], i["psnr"], i["number"]) for t in rows for i in rows
                     if t["B"] == i["B"] == size and t["attack"] == i["attack"] == attack
                     and t["batch"] == i["batch"] and t["labels"] == "true"
                     and i["labels"] == "inferred"]
            true, inferred, number = (statistics.fmean(v) for v in zip(*pairs))
            exact = [t - i for t, i, n in pairs if n == 1.0]
            gap = f"{statistics.fmean(exact):+.2f} dB over {len(exact)}" if exact else "none"
            print(f"  B={size:2d} {attack:4s}: true {true:.2f}, inferred {inferred:.2f} "
                  f"(number accuracy {100 * number:.1f} %); true - inferred where number "
                  f"accuracy is 100 %: {gap} of {len(pairs)} batches")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-psnr", action="store_true", help="label accuracy only")
    parser.add_argument("--probe", action="store_true", help="only rlu's mean-prediction "
                        "probe on the trained models (mean_prediction_probe)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default="runs/labels")
    args = parser.parse_args()
    for key, value in SETTINGS["quick" if args.quick else "full"].items():
        setattr(args, key, value)
    if args.probe:
        mean_prediction_probe(args)
        return
    started = time.monotonic()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def save(rows: list[dict], accuracy: dict, psnr: list[dict] | None = None) -> None:
        (out / "results.json").write_text(json.dumps(
            {"settings": vars(args), "labels": rows, "psnr": psnr or [],
             "federation_accuracy": accuracy}, indent=1, default=str))

    rows, accuracy = label_grid(args, save)
    print_grid(rows)
    target_untrained(rows)
    target_fedavg(rows)
    psnr = [] if args.skip_psnr else psnr_grid(args)
    if psnr:
        print_psnr(psnr)
    print(f"\nfederation test accuracy: {json.dumps(accuracy)}")
    print(f"total {time.monotonic() - started:.0f} s")
    save(rows, accuracy, psnr)


if __name__ == "__main__":
    main()
