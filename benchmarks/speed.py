"""Speed of the batched implementations against the sequential designs they replace.

1. GI: restart-iterations per second with R restarts batched by vmap vs a loop over restarts.
2. GIAS: iterations per second with the per-image generator copies of all images and restarts
   batched (vmap over stacked parameters) vs a loop over copies (the official code's design).
Prints tables and the batched/sequential ratios measured in this run; asserts nothing.
    python benchmarks/speed.py            # ResNet-18 32 px batch 4: GI R = 1, 8, 32; GIAS 4 x 4
    python benchmarks/speed.py --quick    # ConvNet-16, few iterations (a CPU smoke run)
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from gradinv.attacks import create
from gradinv.fl import compute_update, observe
from gradinv.models import build_model
from gradinv.priors import DCGANGenerator, Prior
from gradinv.types import PrivateBatch, ThreatModel


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def iterations_per_second(run: Callable[[int], object], iterations: int,
                          device: torch.device) -> float:
    """Iterations per second of ``run(iterations)``; a 2-iteration warm-up is not counted."""
    run(2)
    _sync(device)
    start = time.perf_counter()
    run(iterations)
    _sync(device)
    return iterations / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--width", type=int)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--restarts", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--gias-restarts", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.model, args.width, args.iterations, args.restarts = "convnet", 16, 3, [1, 8]
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    model = build_model(args.model, width=args.width, image_size=32, seed=0)
    shape = (3, 32, 32)
    g = torch.Generator().manual_seed(0)
    batch = PrivateBatch(torch.rand(args.batch_size, *shape, generator=g),
                         torch.arange(args.batch_size) % 10)
    obs = observe(compute_update(model, batch), ThreatModel())
    torch.manual_seed(0)
    prior = Prior(DCGANGenerator(latent_dim=100, width=64, channels=1, image_size=32), 100)

    def attack(name: str, batched: bool, restarts: int, **extra) -> Callable[[int], object]:
        def run(iterations: int):
            kw = {"latent_iterations": 1, "iterations": iterations + 1} if name == "gias" else {
                "iterations": iterations}
            return create(name, restarts=restarts, batched=batched, **kw, **extra).reconstruct(
                model, obs, image_shape=shape, device=device, progress=False)
        return run

    print(f"{args.model} 32 px, batch {args.batch_size}, {args.iterations} timed iterations each")
    print(f"\nGI restart-iterations per second\n{'device':6s} {'R':>4s} {'batched':>10s} "
          f"{'sequential':>11s} {'ratio':>7s}")
    for device in devices:
        for r in args.restarts:
            fast = r * iterations_per_second(attack("gi", True, r), args.iterations, device)
            slow = r * iterations_per_second(attack("gi", False, r), args.iterations, device)
            print(f"{device.type:6s} {r:4d} {fast:10.2f} {slow:11.2f} {fast / slow:6.2f}x",
                  flush=True)
    r = args.gias_restarts
    print(f"\nGIAS generator-stage iterations per second ({args.batch_size} images x {r} "
          f"restarts, DCGAN width 64)\n{'device':6s} {'batched':>10s} {'loop':>11s} {'ratio':>7s}")
    for device in devices:
        fast = iterations_per_second(attack("gias", True, r, prior=prior), args.iterations, device)
        slow = iterations_per_second(attack("gias", False, r, prior=prior), args.iterations, device)
        print(f"{device.type:6s} {fast:10.3f} {slow:11.3f} {fast / slow:6.2f}x", flush=True)


if __name__ == "__main__":
    main()
