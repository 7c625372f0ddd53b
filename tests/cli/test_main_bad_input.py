"""Bad input to gradinv itself (no command, a misspelt one, a command group without its command,
list), and the check that the bad-input tables of every command together cover every base
command line in bad_input.BASES, each case once."""
import pytest

import test_attack_bad_input
import test_fl_bad_input
import test_prior_bad_input
import test_sweep_bad_input
from bad_input import BASES, case_id

MINIMUM = 9  # this table's size guard (checked below with every other table's)

# (base, extra arguments, fragment of the one error line; None: an argparse error)
CASES = [
    # -- list and the parser itself ---------------------------------------------------------
    ("none", ["list", "--all"], "unrecognized arguments: --all (see 'gradinv list --help')"),
    ("none", ["report", "x", "--quiet"], "--quiet (see 'gradinv report --help')"),
    ("none", ["fl", "simulate", "--record", "r", "--bogus"], "(see 'gradinv fl simulate --help')"),
    # -- report: what users hand it instead of a sweep folder --------------------------------
    ("none", ["report", "{missing}"], "missing does not exist"),
    ("none", ["report", "{file}"], "file.txt is a file, not a sweep folder"),
    ("none", ["report", "{emptydir}"], "emptydir holds no results.jsonl (run 'gradinv sweep"),
    ("none", ["report", "{run_folder}"], "it holds its own report, "),
    ("none", ["report", "{sweeps_parent}"], "the sweeps in it: "),
    ("none", ["report", "{binary_results}"], "results.jsonl is not a text file"),
    ("none", ["list", "attacks"], None),
    ("none", [], None),
    ("none", ["attak"], None),
    ("none", ["fl"], None),
    ("none", ["prior"], None),
    ("none", ["fl", "simulate"], None),
    ("none", ["prior", "learn"], None),
]

TABLES = {"attack": (test_attack_bad_input.CASES, test_attack_bad_input.MINIMUM),
          "fl": (test_fl_bad_input.CASES, test_fl_bad_input.MINIMUM),
          "prior": (test_prior_bad_input.CASES, test_prior_bad_input.MINIMUM),
          "sweep": (test_sweep_bad_input.CASES, test_sweep_bad_input.MINIMUM),
          "main": (CASES, MINIMUM)}


def test_the_tables_cover_every_subcommand():
    every = [case for cases, _ in TABLES.values() for case in cases]
    assert len(every) >= 150 and len({case_id(c) for c in every}) == len(every)
    assert {base for base, _, _ in every} == set(BASES)
    for name, (cases, minimum) in TABLES.items():
        assert len(cases) >= minimum, name


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_bad_input_gives_one_line_and_leaves_nothing(case, check_bad_input):
    check_bad_input(case)
