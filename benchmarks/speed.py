"""Speed of gradinv's optimisation loops: eager against compiled (and compiled with CUDA graphs
on a GPU), restarts batched against the sequential loop over them.

1. GI: restart-iterations per second at R restarts: the sequential eager loop over restarts
   (the reference design: the baseline), batched eager, batched compiled (and batched compiled +
   CUDA graphs on a GPU); their ratios to the baseline, compiled / eager, and the seconds the
   first compiled run spends compiling.
2. GIAS's generator stage (per-image copies of the generator for 4 images x 4 restarts):
   iterations per second, the loop over copies, batched eager with torch.optim.Adam's default
   update (the design before issue 18) and with the fused one, batched compiled (+ graphs).
3. An audit's round: GI on the updates of N clients of one round (the same broadcast
   weights), one after the other (``reconstruct``) vs in one batched pass
   (``reconstruct_many``: clients x restarts rows), eager and compiled; updates x iterations
   per second.
4. GIML (full mode only): the seconds of two meta steps at the paper's budget (1,000 latent +
   500 adaptation iterations, ConvNet width 16), its loops as compile=auto runs them: the first
   includes compiling on a GPU, the second is the steady rate.
5. Agreement: GI eager and compiled from the same starts, over seeds: the image gradient of
   one step, and the final matching cost and PSNR (signed Adam amplifies rounding, so whole
   runs are compared over seeds, not pixel by pixel).

A rate is measured from the difference between a long and a short run (set-up and the final
evaluation cancel), the best of ``--repeats`` interleaved tries; each line is printed as soon
as it is measured. On the CPU the clock is the process's CPU time with ``--threads`` threads
(default 1): on a shared machine wall time measures the neighbours as much as the work. The
seconds spent compiling are wall time (the compiler runs in child processes). Prints tables
and ratios; asserts nothing.
    python benchmarks/speed.py           # ResNet-18 32 px batch 4: GI R = 1, 8, 32; GIAS 4 x 4;
                                         # a round of 4 clients x 4 restarts; a GIML meta step
    python benchmarks/speed.py --quick   # the CPU targets: LeNet 16 px and ConvNet-16 32 px,
                                         # GI R = 1, 8; GIAS 4 x 4 on ConvNet-16; the round
    python benchmarks/speed.py --quick --sections audit   # only some sections
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from unittest import mock
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.func import grad, vmap
from torch.optim.adam import adam

from gradinv.attacks import create, prepare_target
from gradinv.data import load_dataset, private_batch
from gradinv.fl import compute_update, observe
from gradinv.metrics import score
from gradinv.models import build_model
from gradinv.priors import DCGANGenerator, Prior
from gradinv.types import Observation, PrivateBatch, ThreatModel


@dataclass(frozen=True)
class Case:
    """A victim model at one input size, attacked on a batch of held-out images."""

    model: str
    width: int | None
    size: int
    channels: int

    @property
    def name(self) -> str:
        return f"{self.model}{'-' + str(self.width) if self.width else ''} {self.size} px"

    def victim(self) -> torch.nn.Module:
        return build_model(self.model, channels=self.channels, image_size=self.size,
                           width=self.width, seed=0)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _seconds(run: Callable[[int], object], iterations: int, device: torch.device,
             clock: Callable[[], float]) -> float:
    _sync(device)
    start = clock()
    run(iterations)
    _sync(device)
    return clock() - start


def rates(runs: dict[str, Callable[[int], object]], short: int, long: int, repeats: int,
          device: torch.device) -> tuple[dict[str, float], dict[str, float]]:
    """Iterations per second of every run, the best of ``repeats`` (tried in turn, so noise
    from other processes spreads over all), and the wall seconds of each one's first call."""
    clock = time.process_time if device.type == "cpu" else time.perf_counter
    first = {name: _seconds(run, short, device, time.perf_counter) for name, run in runs.items()}
    best = {name: 0.0 for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            extra = _seconds(run, long, device, clock) - _seconds(run, short, device, clock)
            best[name] = max(best[name], (long - short) / max(extra, 1e-9))
    return best, first


def attack_runner(name: str, model: torch.nn.Module, observation: Observation, case: Case,
                  device: torch.device, **settings) -> Callable[[int], object]:
    """``run(n)``: the attack with n iterations (GIAS: 1 latent and n generator-stage ones)."""
    def run(iterations: int):
        budget = ({"latent_iterations": 1, "iterations": iterations + 1} if name == "gias"
                  else {"iterations": iterations})
        return create(name, **budget, **settings).reconstruct(
            model, observation, image_shape=(case.channels, case.size, case.size),
            device=device, progress=False)
    return run


def modes(device: torch.device) -> list[str]:
    return ["off", "on", "graphs"] if device.type == "cuda" else ["off", "on"]


def setup(case: Case, batch_size: int) -> tuple[torch.nn.Module, PrivateBatch, Observation]:
    model = case.victim()
    batch = private_batch(load_dataset("default"), batch_size, size=case.size,
                          channels=case.channels)
    return model, batch, observe(compute_update(model, batch), ThreatModel())


def gi_speed(case: Case, restarts: list[int], args, device: torch.device) -> None:
    model, _, observation = setup(case, args.batch_size)
    print(f"\nGI restart-iterations per second, {case.name}, batch {args.batch_size}, {device.type}"
          f"\n{'R':>3s} {'sequential':>10s} " + " ".join(f"{'batched ' + m:>14s}"
                                                      for m in modes(device))
          + f" {'eager/seq':>9s} {'best/seq':>8s} {'compiled/eager':>14s} {'compile s':>9s}",
          flush=True)
    for r in restarts:
        runs = {"sequential": attack_runner("gi", model, observation, case, device, restarts=r,
                                            batched=False, compile="off")}
        runs |= {m: attack_runner("gi", model, observation, case, device, restarts=r,
                                  compile=m) for m in modes(device)}
        its, first = rates(runs, args.short, args.long, args.repeats, device)
        per = {k: r * v for k, v in its.items()}
        best = max(per[m] for m in modes(device))
        print(f"{r:3d} {per['sequential']:10.1f} "
              + " ".join(f"{per[m]:14.1f}" for m in modes(device))
              + f" {per['off'] / per['sequential']:8.2f}x {best / per['sequential']:7.2f}x"
              f" {per['on'] / per['off']:13.2f}x {first['on'] - first['off']:9.1f}", flush=True)


def textbook_adam(device: torch.device) -> Callable[..., object]:
    """Adam as ``torch.optim.Adam`` runs it by default, the design before issue 18: one pass
    per operation and tensor on a CPU (per-tensor), ``foreach`` on CUDA; gradinv's loops use
    the fused kernel. Replaces ``gradinv.optim.adam`` for a benchmark run (``textbook``)."""
    cuda = device.type == "cuda"

    def update(*args, **kw):
        return adam(*args, **kw | {"fused": False, "foreach": cuda, "capturable": cuda})
    return update


def textbook(run: Callable[[int], object], device: torch.device) -> Callable[[int], object]:
    """``run`` with ``textbook_adam`` in place of gradinv's fused Adam."""
    def with_textbook_adam(iterations: int):
        with mock.patch("gradinv.optim.adam", textbook_adam(device)):
            return run(iterations)
    return with_textbook_adam


def gias_speed(case: Case, args, device: torch.device) -> None:
    model, _, observation = setup(case, args.batch_size)
    torch.manual_seed(0)
    prior = Prior(DCGANGenerator(latent_dim=100, width=64, channels=1, image_size=32), 100)
    r = args.gias_restarts
    runs = {"loop": attack_runner("gias", model, observation, case, device, restarts=r,
                                  batched=False, compile="off", prior=prior)}
    runs |= {m: attack_runner("gias", model, observation, case, device, restarts=r, compile=m,
                              prior=prior) for m in modes(device)}
    runs["textbook"] = textbook(runs["off"], device)
    its, first = rates(runs, args.short, args.long, args.repeats, device)
    best = max(its[m] for m in modes(device))
    print(f"\nGIAS generator-stage iterations per second, {case.name}, {args.batch_size} images "
          f"x {r} restarts, DCGAN width 64, {device.type}\n{'loop':>8s} "
          + " ".join(f"{'batched ' + m:>14s}" for m in ["textbook", *modes(device)])
          + f" {'eager/loop':>10s} {'best/loop':>9s} {'fused/textbook':>14s}"
          f" {'compiled/eager':>14s} {'compile s':>9s}\n{its['loop']:8.3f} "
          + " ".join(f"{its[m]:14.3f}" for m in ["textbook", *modes(device)])
          + f" {its['off'] / its['loop']:9.2f}x {best / its['loop']:8.2f}x"
          f" {its['off'] / its['textbook']:13.2f}x {its['on'] / its['off']:13.2f}x"
          f" {first['on'] - first['off']:9.1f}", flush=True)
    print("  batched textbook: batched eager with torch.optim.Adam's default update in place of "
          "the fused one (GIAS before issue 18)", flush=True)


def audit_round_speed(case: Case, clients: int, args, device: torch.device) -> None:
    model = case.victim()
    data = load_dataset("default")
    observations = [observe(compute_update(model, private_batch(
        data, args.batch_size, size=case.size, channels=case.channels,
        offset=c * args.batch_size), client_id=c), ThreatModel()) for c in range(clients)]
    shape = (case.channels, case.size, case.size)
    r = args.audit_restarts

    def runner(together: bool, mode: str) -> Callable[[int], object]:
        def run(iterations: int):
            attack = create("gi", iterations=iterations, restarts=r, compile=mode)
            if together:
                return attack.reconstruct_many(model, observations, image_shape=shape,
                                               device=device, progress=False)
            return [attack.reconstruct(model, o, image_shape=shape, device=device,
                                       progress=False) for o in observations]
        return run

    runs = {f"{'batched' if together else 'one by one'} {mode}": runner(together, mode)
            for mode in modes(device) for together in (False, True)}
    its, first = rates(runs, args.short, args.long, args.repeats, device)
    print(f"\nAudit of one round: GI on {clients} clients' updates, {r} restarts each, "
          f"{case.name}, batch {args.batch_size}, {device.type}: updates x iterations per "
          "second", flush=True)
    for mode in modes(device):
        alone, together = clients * its[f"one by one {mode}"], clients * its[f"batched {mode}"]
        print(f"  compile={mode:6s} one by one {alone:8.1f}  batched {together:8.1f}  "
              f"batched / one by one {together / alone:5.2f}x", flush=True)
    base = clients * its["one by one off"]
    best = max(clients * v for k, v in its.items() if k.startswith("batched"))
    print(f"  best batched / eager one by one: {best / base:.2f}x", flush=True)


def giml_step_seconds(args, device: torch.device) -> None:
    """Two GIML meta steps at the paper's budget on a ConvNet-16 update at 32 px: the first
    includes compiling (on a GPU), the second is the steady rate."""
    from gradinv.attacks.giml import GIMLConfig, learn_prior

    case = Case("convnet", 16, 32, 3)
    model, _, observation = setup(case, args.batch_size)
    print("\nGIML meta step at the paper's budget (1,000 latent + 500 adaptation iterations), "
          f"{case.name}, batch {args.batch_size}, {device.type} (its loops run as "
          "compile=auto decides: compiled with CUDA graphs on a GPU, eager on a CPU)", flush=True)
    with tempfile.TemporaryDirectory() as out:
        learn_prior(model, [observation], (3, 32, 32), GIMLConfig(steps=2), out, device=device,
                    progress=False, log=lambda _: None)
        log = (Path(out) / "steps.jsonl").read_text().splitlines()
        steps = [json.loads(line) for line in log]
    print(f"  first step {steps[0]['seconds']:.1f} s, second step {steps[1]['seconds']:.1f} s",
          flush=True)


def step_gradient_difference(case: Case, args, device: torch.device) -> float:
    """Largest |compiled - eager| / max |eager| of the image gradient of GI's matching cost."""
    model, _, observation = setup(case, args.batch_size)
    shape = (case.channels, case.size, case.size)
    target = prepare_target(model, observation, image_shape=shape, device=device)
    match = target.matching_cost("cosine", None)
    step = vmap(grad(lambda images: match(images, target.labels)))
    images = torch.rand(2, args.batch_size, *shape, generator=torch.Generator().manual_seed(0))
    eager = step(images.to(device))
    compiled = torch.compile(step, fullgraph=True)(images.to(device))
    return float((compiled - eager).abs().max() / eager.abs().max())


def agreement(case: Case, args, device: torch.device) -> None:
    model, batch, observation = setup(case, args.batch_size)
    print(f"\nGI eager vs compiled, {case.name}, {args.agree_iterations} iterations, 1 restart, "
          f"seeds 0-{args.seeds - 1}, {device.type}: image gradient of one step differs by "
          f"{step_gradient_difference(case, args, device):.1e} (relative)", flush=True)
    for mode in ("off", "on"):
        costs, psnrs = [], []
        for seed in range(args.seeds):
            rec = create("gi", iterations=args.agree_iterations, restarts=1, compile=mode
                         ).reconstruct(model, observation, seed=seed, device=device,
                                       image_shape=(case.channels, case.size, case.size),
                                       progress=False)
            costs.append(rec.matching_cost)
            psnrs.append(score(rec.images, batch.images, predicted_labels=rec.labels,
                               true_labels=batch.labels, num_classes=10).mean_psnr)
        print(f"  compile={mode:3s} matching cost median {statistics.median(costs):.3e} "
              f"(per seed {', '.join(f'{c:.2e}' for c in costs)}); PSNR "
              f"{statistics.mean(psnrs):.2f} +- {statistics.stdev(psnrs):.2f} dB "
              f"(per seed {', '.join(f'{p:.2f}' for p in psnrs)})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--restarts", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--gias-restarts", type=int, default=4)
    parser.add_argument("--short", type=int, default=5, help="iterations of the short run")
    parser.add_argument("--long", type=int, default=25, help="iterations of the long run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--agree-iterations", type=int, default=700)
    parser.add_argument("--clients", type=int, default=4, help="updates of the audit's round")
    parser.add_argument("--audit-restarts", type=int, default=4)
    parser.add_argument("--sections", default="gi,gias,audit,giml,agreement",
                        help="which sections to run (giml only without --quick)")
    parser.add_argument("--device", choices=["cpu", "cuda", "both"], default="both")
    parser.add_argument("--quick", action="store_true",
                        help="the CPU targets: LeNet 16 px and ConvNet-16 32 px, R = 1, 8")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cases = [Case("resnet18", None, 32, 3)]
    if args.quick:
        cases = [Case("lenet", None, 16, 1), Case("convnet", 16, 32, 3)]
        args.restarts, args.agree_iterations = [1, 8], 200
    devices = [torch.device(d) for d in ("cpu", "cuda")
               if args.device in (d, "both") and (d == "cpu" or torch.cuda.is_available())]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}; rates "
          f"from {args.long} - {args.short} iterations, best of {args.repeats} (CPU: process "
          "time; CUDA: wall time)", flush=True)
    sections = set(args.sections.split(","))
    for device in devices:
        for case in cases if "gi" in sections else []:
            gi_speed(case, args.restarts, args, device)
        if "gias" in sections:
            gias_speed(cases[-1], args, device)
        for case in cases if "audit" in sections else []:
            audit_round_speed(case, args.clients, args, device)
        if "giml" in sections and not args.quick:
            giml_step_seconds(args, device)
        for case in cases if "agreement" in sections else []:
            agreement(case, args, device)


if __name__ == "__main__":
    main()
