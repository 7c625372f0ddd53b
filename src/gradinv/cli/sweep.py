"""``gradinv sweep`` (a grid of audits) and ``gradinv report`` (its plots and tables)."""
from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

from ..checks import GradinvError


def cmd_sweep(args: argparse.Namespace) -> None:
    from ..audit.sweep import local_backend, ray_backend, run_sweep
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


def add_sweep_parser(sub) -> None:
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
    from ..audit.sweep_report import write_sweep_report
    print(f"report: {write_sweep_report(args.sweep_dir)}")


def add_report_parser(sub) -> None:
    p = sub.add_parser("report", help="plots and a table of a sweep: leakage vs defense "
                       "strength per attack (matplotlib if installed: pip install "
                       "'gradinv[plots]')")
    p.add_argument("sweep_dir", help="the SWEEP_DIR of 'gradinv sweep'")
    p.set_defaults(run=cmd_report)
