"""``gradinv audit RECORD_DIR``: attack every recorded update of a federation record (gradinv's
own or a Flower run's, see ``gradinv.record.flower``) and write a report ranking clients and
rounds."""
from __future__ import annotations

import argparse

from ..audit.config import config_from_dict
from ..audit.record import BATCH_UPDATES, LeakageAuditConfig, run_leakage_audit
from .options import (
    add_attack_settings_arguments,
    add_model_factory_argument,
    merge_attack_options,
)
from .sweep import add_backend_arguments, backend_from_args


MAX_RANGE = 100_000  # the longest range --rounds or --clients takes (0-99999)


def _ints(text: str) -> tuple[int, ...]:
    """Comma-separated integers and inclusive ranges: ``0,5,9`` or ``0-4,7``."""
    values: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        first, dash, last = part.partition("-")
        try:
            low = int(first)
            high = int(last) if dash else low
        except ValueError:
            raise argparse.ArgumentTypeError("expected comma-separated integers or ranges "
                                             f"(0,5,9 or 0-4), got {text!r}") from None
        if not 0 <= high - low < MAX_RANGE:
            raise argparse.ArgumentTypeError(f"range {part!r} must run upwards and hold at "
                                             f"most {MAX_RANGE} numbers")
        values.extend(range(low, high + 1))
    return tuple(dict.fromkeys(values))


def config_from_args(args: argparse.Namespace) -> LeakageAuditConfig:
    """The audit's config: the record, which updates, and the attacks with their settings."""
    values = {name: getattr(args, name) for name in ("record", "attack", "rounds", "clients",
                                                     "max_updates", "model_factory", "seed",
                                                     "device")}
    values["batch_updates"] = args.batch_updates
    merge_attack_options(values, args)
    del values["defenses"]  # none is chosen here: --set goes to the attacks
    return config_from_dict(LeakageAuditConfig, values)  # type: ignore[return-value]


def cmd_audit(args: argparse.Namespace) -> None:
    config = config_from_args(args)
    result = run_leakage_audit(config, out=args.out, progress=not args.quiet,
                               workers=args.workers, backend=backend_from_args(args))
    left = result.not_attacked
    print(f"attacked {left['of'] - left['updates']} of {left['of']} updates"
          + (f"; no update of clients {', '.join(map(str, left['clients']))}"
             if left["clients"] else ""))
    top = result.clients[0]
    score = (f"mean PSNR {top['mean_psnr']:.2f} dB" if top["mean_psnr"] is not None
             else f"matching cost {top['matching_cost']:.4g}")
    spread = top["mean_psnr_std" if top["mean_psnr"] is not None else "matching_cost_std"]
    print(f"most leaking client: {top['client']} ({score}"
          + (f", std {spread:.3g} over its {top['updates']} updates)" if spread is not None
             else ", one update)"))
    print(f"report: {result.folder / 'report.html'}")


def add_audit_parser(sub) -> None:
    p = sub.add_parser("audit", help="attack every update of a federation record and rank "
                       "clients and rounds by leakage")
    p.add_argument("record", help="the record folder ('gradinv fl simulate' or "
                   "gradinv.record.flower)")
    p.add_argument("--attack", default="gi", help="attack name, or a comma-separated list")
    add_model_factory_argument(p)
    add_attack_settings_arguments(p, defenses=False)
    p.add_argument("--rounds", type=_ints, help="only these rounds, e.g. 0,5,9 or 0-4")
    p.add_argument("--clients", type=_ints, help="only these clients, e.g. 0,3 or 0-9")
    p.add_argument("--max-updates", type=int, help="at most this many updates, sampled across "
                   "clients and rounds")
    p.add_argument("--out", default="runs", help="folder for the audit (an unfinished audit "
                   "of the same settings there is resumed)")
    p.add_argument("--batch-updates", choices=BATCH_UPDATES, default="auto",
                   help="on: attack the chosen clients of a round together, matched in one "
                   "batched pass (up to 8 at a time) by the attacks that can (gi, gi-z, "
                   "gias); off: one update after the other; auto (default): on where this "
                   "machine has a GPU, off on a CPU (with --backend ray on GPU workers, say on)")
    add_backend_arguments(p, "unit (up to 8 updates of a round when they are batched, else "
                          "one update)")
    p.add_argument("--seed", type=int, default=0, help="seed of the attacks' random starts "
                   "(default 0)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_audit)
