"""Quality benchmark: GI vs GI-z vs GIAS on held-out Fashion-MNIST at equal iteration budgets.

Protocol (shared/README.md, section 4): test split; batch k of size B = the first B images with
pairwise distinct labels from index 100*k; 28 -> 32 px bilinear (antialiased), grey replicated to
3 channels; CIFAR-style ResNet-18, 10 classes, random init (seed 0; Kaiming fan_out as
torchvision, ``--init-scheme pytorch`` for the layer defaults), BatchNorm in eval mode;
labels known; FedSGD gradient of the mean cross-entropy; PSNR per image on the grey image,
averaged over the batch. The prior is the generator shipped with gradinv (train split only).
``--case faces`` is the mismatched-prior case GIAS exists for: the DigiFace-1M DCGAN (synthetic
faces, ``pip install --no-deps gan-face-generate``) attacking real LFW faces (scikit-image).
Every batch also gets the prior's ceiling: the closest G(z) to the true images, found by fitting
z to the pixels. GI-z cannot beat it; if GI-z stays far below it, the search is what fails.

    python benchmarks/quality.py --quick     # about 10 min on 2 CPU cores (reduced budget)
    python benchmarks/quality.py             # the full setting, meant for a GPU
    python benchmarks/quality.py --quick --attacks gi --set gi.init=noise --budget 2000
    python benchmarks/quality.py --quick --attacks gi,gias --precision bf16   # issue 18
Prints a table (mean over seeds +- std) and writes image grids and results.json under --out.
"""
from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from unittest import mock

import torch

from gradinv.audit import AuditConfig, PriorSpec, resolve_device, run_config
from gradinv.audit import batch as audit_batch
from gradinv.data import ImageDataset, adapt_channels, load_dataset
from gradinv.models import INIT_SCHEMES, build_model
from gradinv.metrics import psnr
from gradinv.priors import load_prior, project
from gradinv.report import image_grid, write_png
from gradinv.audit.config import parse_assignment
from gradinv.types import GradinvError, ThreatModel


ATTACKS = ("gi", "gi-z", "gias")
PRECISIONS = ("ieee", "tf32", "bf16")


def attack_settings(names: list[str], budget: int, restarts: int, latent_share: float,
                    overrides: list[str]) -> dict[str, dict]:
    """Equal total iterations for every attack; GIAS splits its budget between the stages.

    ``overrides`` are ``attack.key=value`` strings (``gi.init=noise``, ``gias.lr=3e-4``) for
    the ablations recorded in RESULTS.md.
    """
    latent = max(1, int(budget * latent_share))
    settings = {
        "gi": {"iterations": budget, "restarts": restarts},
        "gi-z": {"iterations": budget, "restarts": restarts},
        "gias": {"iterations": budget, "latent_iterations": latent, "restarts": restarts},
    }
    for override in overrides:
        name, key, value = parse_assignment(override)
        if name not in names:
            raise SystemExit(f"--set expects attack.key=value with attack in {names}: "
                             f"{override!r}")
        settings[name][key] = value
    return {name: settings[name] for name in names}


@contextmanager
def attack_precision(name: str, device: torch.device) -> Iterator[None]:
    """The attacks' arithmetic, for issue 18's precision measurement: ``ieee`` is gradinv's
    fp32; ``tf32`` rounds the inputs of convolutions and matrix products to 10 mantissa bits
    (CUDA only); ``bf16`` is autocast to bfloat16. The client's update is computed as always."""
    if name == "ieee":
        yield
    elif name == "tf32":
        if device.type != "cuda":
            raise SystemExit("--precision tf32 exists on CUDA devices only")
        with mock.patch("gradinv.execution.FP32_PRECISION", "tf32"):
            yield
    else:
        attack = audit_batch.run_attacks

        def run_attacks_in_bf16(*args, **kwargs):
            # no cast cache: under one context it keeps every iteration's casts (22 GB)
            with torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=False):
                return attack(*args, **kwargs)

        with mock.patch.object(audit_batch, "run_attacks", run_attacks_in_bf16):
            yield


def load_test_split() -> ImageDataset:
    try:
        return load_dataset("fashion-mnist", split="test")
    except GradinvError:
        print("Fashion-MNIST not installed: using the embedded 500 test images")
        return load_dataset("default")


def load_lfw_faces() -> ImageDataset:
    """skimage's lfw_subset, first 100 images (real faces, 25 x 25 grey).

    The subset has no identities, so image i gets the pseudo-label i mod 10: the victim is a
    random 10-class model and the labels only choose which logit each image's loss pulls.
    """
    try:
        from skimage.data import lfw_subset
    except ImportError:
        raise GradinvError("the faces case needs scikit-image: pip install scikit-image") from None
    faces = torch.from_numpy(lfw_subset()[:100]).float()[:, None].clamp(0, 1)
    return ImageDataset("lfw-faces", faces, torch.arange(100) % 10, 10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--batch-sizes", type=int, nargs="+")
    parser.add_argument("--seeds", type=int, nargs="+",
                        help="batch indices k (offset 100*k; 10*k for faces)")
    parser.add_argument("--budget", type=int, help="total iterations per attack")
    parser.add_argument("--restarts", type=int)
    parser.add_argument("--latent-share", type=float, default=0.35,
                        help="fraction of GIAS's budget spent in the latent stage")
    parser.add_argument("--width", type=int, default=64, help="ResNet-18 width")
    parser.add_argument("--init-scheme", default="kaiming-fan-out", choices=sorted(INIT_SCHEMES),
                        help="victim initialisation (pytorch: the layer defaults, the easier "
                        "victim of the 2026-11-24 results)")
    parser.add_argument("--attacks", default=",".join(ATTACKS),
                        help="comma-separated subset of gi,gi-z,gias")
    parser.add_argument("--set", action="append", default=[], metavar="ATTACK.KEY=VALUE",
                        help="override one hyper-parameter, e.g. gi.init=noise (repeatable)")
    parser.add_argument("--case", default="fashion", choices=["fashion", "faces"],
                        help="fashion: matching prior on held-out Fashion-MNIST; faces: the "
                        "DigiFace DCGAN prior (synthetic faces) on real LFW faces (mismatch)")
    parser.add_argument("--mode", default="eval", choices=["eval", "train"],
                        help="BatchNorm mode of the victim (train: batch statistics)")
    parser.add_argument("--bn-stats", action="store_true",
                        help="the client leaks its BatchNorm batch statistics: the attacks add "
                        "the BN-statistics prior (weight: --set ATTACK.bn_stats=W)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="ieee", choices=PRECISIONS,
                        help="the attacks' arithmetic: ieee (gradinv's fp32), tf32 (CUDA), "
                        "bf16 (autocast)")
    parser.add_argument("--out", default="runs/quality")
    args = parser.parse_args()
    quick = dict(batch_sizes=[4], seeds=[0], budget=700, restarts=1)
    full = dict(batch_sizes=[1, 4, 8], seeds=[0, 1, 2], budget=2000, restarts=4)
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)

    device = resolve_device(args.device)
    threat = ThreatModel(model_mode=args.mode, bn_stats_known=args.bn_stats)
    data = load_test_split() if args.case == "fashion" else load_lfw_faces()
    prior_name = "fashion-mnist" if args.case == "fashion" else "faces"
    prior = load_prior(prior_name)  # for the ceiling; the attacks load theirs from the config
    step = 100 if args.case == "fashion" else 10
    model = build_model("resnet18", channels=3, num_classes=10, width=args.width, seed=0,
                        init_scheme=args.init_scheme)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = [n.strip() for n in args.attacks.split(",")]
    if any(n not in ATTACKS for n in names):
        parser.error(f"--attacks takes a subset of {','.join(ATTACKS)}")
    settings = attack_settings(names, args.budget, args.restarts, args.latent_share, args.set)
    print(f"device {device}, ResNet-18 width {args.width} init {args.init_scheme}, BN "
          f"{args.mode} mode, BN statistics {'leaked' if args.bn_stats else 'private'}, "
          f"budget {args.budget} iterations, precision {args.precision}, "
          f"{args.restarts} restart(s), batches {args.batch_sizes}, seeds {args.seeds}, "
          f"settings {settings}")
    # The victim is seeded 0 for every batch; the attack's starts are seeded by the batch index.
    base = AuditConfig(attack=",".join(names), model="resnet18", width=args.width,
                       init_scheme=args.init_scheme, threat=threat, attack_settings=settings,
                       prior=PriorSpec(prior_name) if set(names) - {"gi"} else None,
                       model_seed=0, device=args.device)
    results: list[dict] = []
    for batch_size in args.batch_sizes:
        for seed in args.seeds:
            config = replace(base, batch_size=batch_size, offset=step * seed, attack_seed=seed)
            with attack_precision(args.precision, device):
                run = run_config(config, model=model, data=data)
            batch = run.truth
            rows = [batch.images]
            ceiling = project(prior, batch.images.to(device), iterations=1000, restarts=4,
                              seed=seed).cpu()
            ceiling_psnr = psnr(adapt_channels(ceiling, 1), adapt_channels(batch.images, 1))
            results.append({"attack": "projection", "batch_size": batch_size, "seed": seed,
                            "mean_psnr": float(ceiling_psnr.mean()),
                            "best_psnr": float(ceiling_psnr.max())})
            print(f"  B={batch_size} seed={seed} prior ceiling (closest G(z) to the truth) "
                  f"PSNR {results[-1]['mean_psnr']:6.2f} dB", flush=True)
            for name, outcome in run.outcomes.items():
                s = outcome.scores
                rows.append(outcome.reconstruction.images[torch.tensor(s.order)])
                results.append({"attack": name, "batch_size": batch_size, "seed": seed,
                                "mean_psnr": s.mean_psnr, "mean_ssim": s.mean_ssim,
                                "best_psnr": s.best_psnr, "seconds": outcome.seconds})
                print(f"  B={batch_size} seed={seed} {name:5s} PSNR {s.mean_psnr:6.2f} dB "
                      f"SSIM {s.mean_ssim:.3f} best {s.best_psnr:6.2f} "
                      f"({outcome.seconds:.0f} s)", flush=True)
            write_png(out / f"grid-B{batch_size}-seed{seed}.png", image_grid(rows, scale=2))
    (out / "results.json").write_text(json.dumps({"settings": vars(args), "results": results},
                                                 indent=2))
    print_table(results, args.batch_sizes, list(settings))


def _mean_std(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):6.2f} +- {spread:4.2f}"


def print_table(results: list[dict], batch_sizes: list[int], names: list[str]) -> None:
    print(f"\n{'B':>2s} {'attack':6s} {'PSNR (dB)':>15s} {'SSIM':>15s} {'best PSNR':>15s}")
    for b in batch_sizes:
        for name in names:
            rows = [r for r in results if r["batch_size"] == b and r["attack"] == name]
            print(f"{b:2d} {name:6s} {_mean_std([r['mean_psnr'] for r in rows]):>15s} "
                  f"{_mean_std([r['mean_ssim'] for r in rows]):>15s} "
                  f"{_mean_std([r['best_psnr'] for r in rows]):>15s}")
        if set(ATTACKS) <= set(names):
            gi, giz, gias = (statistics.mean(r["mean_psnr"] for r in results
                                             if r["batch_size"] == b and r["attack"] == n)
                             for n in ATTACKS)
            print(f"   GIAS - GI {gias - gi:+.2f} dB, GIAS - GI-z {gias - giz:+.2f} dB")
        ceiling = [r["mean_psnr"] for r in results
                   if r["batch_size"] == b and r["attack"] == "projection"]
        print(f"   prior ceiling (closest G(z) to the truth, no attack): "
              f"{_mean_std(ceiling).strip()} dB")


if __name__ == "__main__":
    main()
