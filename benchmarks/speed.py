"""Restart-iterations per second of GI: restarts batched with vmap vs a sequential loop.

Prints a table and the batched/sequential ratio measured in this run; asserts nothing.
    python benchmarks/speed.py                      # ResNet-18, 32 px, batch 4, R = 1, 8, 32
    python benchmarks/speed.py --quick              # ConvNet-16, few iterations (CPU smoke run)
"""
from __future__ import annotations

import argparse
import time

import torch

from gradinv.attacks.gi import GI
from gradinv.fl import compute_update, observe
from gradinv.models import build_model
from gradinv.types import PrivateBatch, ThreatModel


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_gi(model, obs, shape, restarts: int, iterations: int, batched: bool,
            device: torch.device) -> float:
    """Restart-iterations per second (one warm-up iteration is not counted)."""
    GI(iterations=1, restarts=restarts, batched=batched).reconstruct(
        model, obs, image_shape=shape, device=device, progress=False)
    _sync(device)
    start = time.perf_counter()
    GI(iterations=iterations, restarts=restarts, batched=batched).reconstruct(
        model, obs, image_shape=shape, device=device, progress=False)
    _sync(device)
    return restarts * iterations / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--width", type=int)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--restarts", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.model, args.width, args.iterations, args.restarts = "convnet", 16, 3, [1, 8]
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    model = build_model(args.model, width=args.width, image_size=args.image_size, seed=0)
    shape = (3, args.image_size, args.image_size)
    g = torch.Generator().manual_seed(0)
    batch = PrivateBatch(torch.rand(args.batch_size, *shape, generator=g),
                         torch.arange(args.batch_size) % 10)
    obs = observe(compute_update(model, batch), ThreatModel())
    print(f"GI on {args.model} {args.image_size}px batch {args.batch_size}, "
          f"{args.iterations} timed iterations per setting")
    print(f"{'device':6s} {'R':>4s} {'batched it*R/s':>15s} {'sequential it*R/s':>18s} {'ratio':>7s}")
    for device in devices:
        for r in args.restarts:
            fast = time_gi(model, obs, shape, r, args.iterations, True, device)
            slow = time_gi(model, obs, shape, r, args.iterations, False, device)
            print(f"{device.type:6s} {r:4d} {fast:15.2f} {slow:18.2f} {fast / slow:6.2f}x",
                  flush=True)


if __name__ == "__main__":
    main()
