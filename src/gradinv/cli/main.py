"""The ``gradinv`` command: parse arguments, call the library, print where the results are."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..checks import GradinvError
from .attack import add_attack_parsers
from .audit import add_audit_parser
from .fl import add_fl_parser
from .prior import add_prior_parser
from .sweep import add_report_parser, add_sweep_parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gradinv", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    add_attack_parsers(sub)
    add_fl_parser(sub)
    add_prior_parser(sub)
    add_sweep_parser(sub)
    add_report_parser(sub)
    add_audit_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except GradinvError as err:
        print(f"gradinv: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gradinv: interrupted", file=sys.stderr)
        return 130
    return 0

