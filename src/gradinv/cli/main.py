"""The ``gradinv`` command: parse arguments, call the library, print where the results are."""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from ..audit.backends import Terminated, sigterm_raises
from ..checks import GradinvError
from .attack import add_attack_parsers
from .audit import add_audit_parser
from .fl import add_fl_parser
from .prior import add_prior_parser
from .sweep import add_report_parser, add_sweep_parser


class Parser(argparse.ArgumentParser):
    """argparse's own mistakes (an unknown option, a bad number, a name outside the choices)
    end as every other bad input does: one 'gradinv: error: ...' line and exit 2, not the
    usage block. Subcommands' parsers are of this class too (argparse makes them so)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"gradinv: error: {message} (see '{self.prog} --help')\n")


DESCRIPTION = """Audit how much a federated client's update leaks: reconstruct its private images
from the gradient or model update the server sees (DLG, iDLG, GI, GI-z, GIAS, GIML), with and
without defenses, and report PSNR/SSIM, labels, image grids and plots.
Start with 'gradinv demo'; 'gradinv list' names the attacks, defenses, models and datasets;
'gradinv COMMAND --help' tells a command's options."""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="gradinv", description=DESCRIPTION,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    add_attack_parsers(sub)
    add_fl_parser(sub)
    add_prior_parser(sub)
    add_sweep_parser(sub)
    add_report_parser(sub)
    add_audit_parser(sub)
    _name_leaves(parser)
    return parser


def _name_leaves(parser: argparse.ArgumentParser) -> None:
    """Every command's parser remembers itself (``command_parser``), so that an unknown
    option names that command's --help, not gradinv's (argparse reports it at the top)."""
    subcommands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subcommands:
        parser.set_defaults(command_parser=parser)
    for action in subcommands:
        for child in set(action.choices.values()):
            _name_leaves(child)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    args, unknown = build_parser().parse_known_args(argv)
    if unknown:
        args.command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; one line and the shell's codes when interrupted (130 for SIGINT, 143
    for SIGTERM), after the command has recorded what finished and ended its workers."""
    args = parse(argv)
    try:
        with sigterm_raises():
            args.run(args)
    except GradinvError as err:
        print(f"gradinv: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gradinv: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("gradinv: terminated", file=sys.stderr)
        return 143
    except BrokenPipeError:
        return _reader_gone()
    return 0


def _reader_gone() -> int:
    """Whoever read the output (``| head``) stopped reading: end quietly, as a Unix tool that
    SIGPIPE ends (status 141), what finished being recorded as on Ctrl-C. The output goes to
    /dev/null, so flushing it at exit raises nothing."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 141

