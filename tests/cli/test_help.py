"""Every option of every command says what it does, and no help promises 'default None'."""
import argparse

import pytest

from gradinv.cli.main import build_parser


def _parsers(parser: argparse.ArgumentParser, name: str = "gradinv"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, child in action.choices.items():
                yield from _parsers(child, f"{name} {sub}")


PARSERS = dict(_parsers(build_parser()))


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_every_option_has_help_and_no_default_none(name):
    parser = PARSERS[name]
    options = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert [a.option_strings[0] for a in options if not a.help] == []
    assert "default None" not in parser.format_help().replace("\n", " ")
