"""``gradinv sweep`` (a grid of audits) and ``gradinv report`` (its plots and tables)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..audit.backends import BACKENDS, Backend, choose_backend
from ..checks import GradinvError


def backend_from_args(args: argparse.Namespace) -> Backend:
    """The backend ``add_backend_arguments``' options choose."""
    return choose_backend(args.backend, address=args.address, gpus_per_run=args.gpus_per_run)


def add_backend_arguments(p: argparse.ArgumentParser, unit: str) -> None:
    """Where the ``unit``s of a long command run: --workers, --backend, --address,
    --gpus-per-run (``gradinv.audit.backends``)."""
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1); "
                   "with --backend ray, the CPUs of the local Ray instance")
    p.add_argument("--backend", choices=BACKENDS, default="local",
                   help="local worker processes, or Ray tasks (pip install 'gradinv[ray]')")
    p.add_argument("--address", help="--backend ray: the address (host:port) of an existing "
                   "Ray cluster (default: start a local instance and stop it afterwards)")
    p.add_argument("--gpus-per-run", type=float, help=f"--backend ray: GPUs each {unit} takes "
                   "(a fraction shares one; default 0)")


def cmd_sweep(args: argparse.Namespace) -> None:
    from ..audit.sweep import read_results, run_sweep
    out = args.out or str(Path("sweeps") / Path(args.sweep).stem)
    lines = run_sweep(args.sweep, out, workers=args.workers, retry_failed=args.retry_failed,
                      progress=not args.quiet, backend=backend_from_args(args))
    failed = sum(line["status"] == "failed" for line in lines)
    now = {line["id"] for line in lines}
    # Runs that failed before and were not run again still fail: the status must say so.
    before = sum(line["status"] == "failed" for i, line in read_results(out).items()
                 if i not in now)
    print(f"sweep: {len(lines)} run(s) done now ({failed} failed)"
          + (f", {before} earlier failed run(s) not retried" if before else "")
          + f"; results: {Path(out) / 'results.jsonl'}")
    if failed + before:
        raise GradinvError(f"{failed + before} run(s) of the sweep failed (their errors are "
                           f"in {Path(out) / 'results.jsonl'}; --retry-failed runs them again)")


def add_sweep_parser(sub) -> None:
    p = sub.add_parser("sweep", help="run a grid of audits (attack x defense x strength x "
                       "batch size x seed) from a TOML file; resumes where it stopped")
    p.add_argument("sweep", help="the sweep file (a TOML file: README.md, section Sweeps)")
    p.add_argument("--out", help="SWEEP_DIR: results.jsonl and runs/ (default "
                   "sweeps/<file name>)")
    add_backend_arguments(p, "run")
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
