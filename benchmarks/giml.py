"""GIML benchmark: does a prior learned from a federation's observed updates help the attack?

1. A Fashion-MNIST federation is simulated and recorded (train split across 20 clients, FedSGD,
   batches of 4, ConvNet with the Kaiming fan_out init, BatchNorm in train mode as clients
   train, 1 channel, 32 px); private batches are not stored.
2. GIML learns a DCGAN from the record's observed updates only (``gradinv.attacks.giml``).
3. Evaluation on held-out **test** batches (never used for learning), attacked against the final
   global model with the same budget: GI; GIAS with the untrained generator GIML starts from;
   GIAS with the GIML-learned generator; GIAS with the shipped prior trained on real images
   (the upper bound). Batch k = the first B test images with distinct labels from index 100*k.

Why this regime: the federation must actually train, and on these CPUs that means a small
ConvNet whose clients compute with BatchNorm in train mode (an eval-mode federation of the same
network stayed at 9-11 % test accuracy, see benchmarks/RESULTS.md); attacks are evaluated in the
same mode, at B = 4, where GI alone recovers little (about 8 dB) and the shipped prior shows how
much a good prior can add (about 12 dB). Caveat: a convolution without bias followed by
batch-statistics BatchNorm makes the gradient nearly blind to a global change of the batch's
brightness and contrast, which GI cannot recover; a prior has to supply them (measured: the
GIML prior, learned from these gradients, gets as far as the shipped one in PSNR).

    python benchmarks/giml.py --quick     # about 15-20 min on 2 CPU cores
    python benchmarks/giml.py             # the paper's GIML budget, meant for a GPU
Prints PSNR / SSIM (mean +- std over batches and seeds), writes results.json, sample grids of
the learned G during learning (giml/samples-step*.png) and reconstruction grids under --out.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from gradinv.attacks import create
from gradinv.audit import evaluate, resolve_device
from gradinv.data import load_dataset, private_batch
from gradinv.fl import compute_update, observe
from gradinv.fl.federation import FederationConfig, simulate
from gradinv.record import open_record
from gradinv.priors import Prior, load_prior
from gradinv.attacks.giml import GIMLConfig, learn_prior, untrained_generator
from gradinv.report import image_grid, write_png
from gradinv.types import ThreatModel

SIZE = 32
SETTINGS = {
    "quick": dict(rounds=12, clients_per_round=4, steps=48, latent_iterations=300,
                  adapt_iterations=150, gen_width=32, budget=300, batches=[0, 1], seeds=[0, 1]),
    "full": dict(rounds=50, clients_per_round=4, steps=200, latent_iterations=1000,
                 adapt_iterations=500, gen_width=64, budget=2000, batches=[0, 1, 2, 3],
                 seeds=[0, 1, 2]),
}


def record_federation(out: Path, args: argparse.Namespace) -> Path:
    config = FederationConfig(model="convnet", width=args.width, dataset="fashion-mnist",
                              image_size=SIZE, channels=1, num_clients=20,
                              clients_per_round=args.clients_per_round, rounds=args.rounds,
                              batch_size=args.client_batch, server_lr=args.server_lr,
                              threat=ThreatModel(model_mode=args.mode), store_private=False,
                              seed=0)
    record = simulate(config, out, progress=True)
    print(f"federation: test accuracy per round {record.test_accuracy()}", flush=True)
    return out


def learn(record_dir: Path, out: Path, args: argparse.Namespace, device: torch.device) -> tuple:
    record = open_record(record_dir)
    config = GIMLConfig(width=args.gen_width, channels=1, latent_iterations=args.latent_iterations,
                        adapt_iterations=args.adapt_iterations, steps=args.steps,
                        sample_every=max(args.steps // 4, 1), checkpoint_every=5)
    started = time.monotonic()
    path = learn_prior(record.build_model(), record.observations(), (1, SIZE, SIZE), config, out,
                       device=device)
    print(f"GIML: {args.steps} meta steps in {time.monotonic() - started:.0f} s -> {path}")
    return config, path


def final_model(record_dir: Path) -> torch.nn.Module:
    """The global model after the last recorded round: the state every attack is run against."""
    record = open_record(record_dir)
    model = record.build_model()
    model.load_state_dict(record.global_state(record.rounds()[-1] + 1))
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    for key, value in SETTINGS["quick"].items():
        nargs = "+" if isinstance(value, list) else None
        parser.add_argument("--" + key.replace("_", "-"), type=int, nargs=nargs)
    parser.add_argument("--width", type=int, default=16, help="ConvNet width of the victim")
    parser.add_argument("--latent-share", type=float, default=0.35)
    parser.add_argument("--mode", default="train", choices=["train", "eval"],
                        help="the clients' BatchNorm mode (eval: the official GIML code's "
                        "regime, where the gradient sees intensities but the federation does "
                        "not train here)")
    parser.add_argument("--client-batch", type=int, default=4,
                        help="images per client update (the official GIML code learns from "
                        "single-image gradients)")
    parser.add_argument("--server-lr", type=float, default=0.1, help="FedSGD server step")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default="runs/giml")
    args = parser.parse_args()
    for key, value in SETTINGS["quick" if args.quick else "full"].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    device = resolve_device(args.device)
    out = Path(args.out)
    print(f"device {device}, settings {vars(args)}", flush=True)

    record_dir = record_federation(out / "record", args)
    config, learned_path = learn(record_dir, out / "giml", args, device)
    priors = {
        "gias-untrained": Prior(untrained_generator(config, 1), config.latent_dim, name="untrained"),
        "gias-giml": load_prior(str(learned_path)),
        "gias-shipped": load_prior("fashion-mnist"),
    }
    model = final_model(record_dir)
    threat = open_record(record_dir).meta.threat  # the federation's (BN in train mode)
    test = load_dataset("fashion-mnist", split="test")
    latent = max(1, int(args.budget * args.latent_share))
    results: list[dict] = []
    for k in args.batches:
        batch = private_batch(test, 4, size=SIZE, channels=1, offset=100 * k)
        observation = observe(compute_update(model, batch, mode=threat.model_mode), threat)
        for seed in args.seeds:
            rows = [batch.images]
            attacks = {"gi": create("gi", iterations=args.budget, restarts=1)}
            attacks.update({name: create("gias", prior=prior, iterations=args.budget,
                                         latent_iterations=latent, restarts=1)
                            for name, prior in priors.items()})
            for name, attack in attacks.items():
                started = time.monotonic()
                rec = attack.reconstruct(model, observation, image_shape=(1, SIZE, SIZE),
                                         seed=seed, device=device, progress=False)
                s = evaluate(rec, batch.images, batch.labels, data_channels=1, num_classes=10)
                rows.append(rec.images[torch.tensor(s.order)])
                results.append({"attack": name, "batch": k, "seed": seed, "psnr": s.mean_psnr,
                                "ssim": s.mean_ssim, "seconds": time.monotonic() - started})
                print(f"  batch {k} seed {seed} {name:15s} PSNR {s.mean_psnr:6.2f} dB "
                      f"SSIM {s.mean_ssim:.3f} ({results[-1]['seconds']:.0f} s)", flush=True)
            write_png(out / f"grid-batch{k}-seed{seed}.png", image_grid(rows, scale=2))
    (out / "results.json").write_text(json.dumps({"settings": vars(args), "results": results},
                                                 indent=2))
    print_table(results, ["gi", *priors])


def _mean_std(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):6.2f} +- {spread:4.2f}"


def print_table(results: list[dict], names: list[str]) -> None:
    print(f"\n{'attack':15s} {'PSNR (dB)':>15s} {'SSIM':>15s}")
    means = {}
    for name in names:
        rows = [r for r in results if r["attack"] == name]
        means[name] = statistics.mean(r["psnr"] for r in rows)
        print(f"{name:15s} {_mean_std([r['psnr'] for r in rows]):>15s} "
              f"{_mean_std([r['ssim'] for r in rows]):>15s}")
    print(f"GIML prior - untrained G: {means['gias-giml'] - means['gias-untrained']:+.2f} dB; "
          f"GIML prior - GI: {means['gias-giml'] - means['gi']:+.2f} dB")


if __name__ == "__main__":
    main()
