"""``gradinv audit RECORD_DIR``: attack every recorded update of a federation record (gradinv's
own or a Flower run's, see ``gradinv.flower``) and write a report ranking clients and rounds."""
from __future__ import annotations

import argparse

from .record_leakage import LeakageAuditConfig, run_leakage_audit

# Attack settings this command takes, and the hyper-parameter each sets.
SETTINGS = {"iterations": int, "restarts": int, "lr": float, "tv": float}


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")


def cmd_audit(args: argparse.Namespace) -> None:
    hyper = {k: getattr(args, k) for k in SETTINGS if getattr(args, k) is not None}
    config = LeakageAuditConfig(record=args.record, attack=args.attack, hyperparameters=hyper,
                                rounds=args.rounds, clients=args.clients,
                                max_updates=args.max_updates, seed=args.seed,
                                device=args.device)
    result = run_leakage_audit(config, out=args.out, progress=not args.quiet)
    print(f"attacked {len({(r['round'], r['client']) for r in result.rows})} updates")
    top = result.clients[0]
    score = (f"mean PSNR {top['mean_psnr']:.2f} dB" if top["mean_psnr"] is not None
             else f"matching cost {top['matching_cost']:.4g}")
    print(f"most leaking client: {top['client']} ({score})")
    print(f"report: {result.folder / 'report.html'}")


def add_audit_parser(sub) -> None:
    p = sub.add_parser("audit", help="attack every update of a federation record and rank "
                       "clients and rounds by leakage")
    p.add_argument("record", help="the record folder ('gradinv fl simulate' or gradinv.flower)")
    p.add_argument("--attack", default="gi", help="attack name, or a comma-separated list")
    for name, kind in SETTINGS.items():
        p.add_argument(f"--{name}", type=kind)
    p.add_argument("--rounds", type=_ints, help="only these rounds, e.g. 0,5,9")
    p.add_argument("--clients", type=_ints, help="only these clients, e.g. 0,3")
    p.add_argument("--max-updates", type=int, help="at most this many updates, spread evenly")
    p.add_argument("--out", default="runs", help="folder for the report")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(run=cmd_audit)
