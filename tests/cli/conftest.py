"""The bad-input tables (test_*_bad_input.py): the record their cases point at, and the check
every case must pass (bad_input.py holds the rest of what they share)."""
from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from bad_input import BASES, case_argv, run_main, snapshot
from gradinv.cli import main
from gradinv.record import open_record


@pytest.fixture(scope="session")
def shared_record(tmp_path_factory) -> tuple[Path, int, int]:
    """A one-round LeNet federation record (clients 0 and 1, one observed), made by the CLI:
    (path, the observed client, the client not observed)."""
    path = tmp_path_factory.mktemp("shared") / "rec"
    argv = [a.replace("{out}", str(path)) for a in BASES["fl"]]
    with contextlib.redirect_stdout(None):
        assert main(argv) == 0
    (observed,) = {e.client_id for e in open_record(path).entries()}
    return path, observed, 1 - observed


@pytest.fixture
def check_bad_input(tmp_path, shared_record, capsys):
    """Run a case (base, extra arguments, fragment of the one error line or None): exit code 2,
    no traceback, one 'gradinv: error: ...' line naming the fragment, and nothing left behind
    under ``tmp_path`` or changed in the shared record."""
    def check(case) -> None:
        base, extra, fragment = case
        argv = case_argv(base, extra, tmp_path, shared_record)
        before, record_before = snapshot(tmp_path), snapshot(shared_record[0])
        code, err = run_main(argv, capsys)
        assert code == 2, err
        assert "Traceback" not in err
        assert err.startswith("gradinv: error: ") and len(err.splitlines()) == 1, err
        assert fragment is None or fragment in err, err
        assert snapshot(tmp_path) == before, "the failed run left files behind"
        assert snapshot(shared_record[0]) == record_before, "the failed run changed the record"
    return check
