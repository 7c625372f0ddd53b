"""The Flower example's record names the data its clients really used: without the
Fashion-MNIST files it falls back to the embedded subset, and then says so and records
``default``, not ``fashion-mnist``."""
import importlib
import sys
from pathlib import Path

import pytest

from gradinv.checks import GradinvError
from gradinv.data import load_dataset

pytest.importorskip("flwr")
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "flower"


@pytest.fixture(scope="module")
def run_flower():
    sys.path.insert(0, str(EXAMPLE))
    try:
        yield importlib.import_module("run_flower")
    finally:
        sys.path.remove(str(EXAMPLE))


def test_the_dataset_recorded_is_the_one_loaded(run_flower, capsys):
    try:
        load_dataset("fashion-mnist", split="train")
    except GradinvError:
        assert run_flower.available_dataset("fashion-mnist") == "default"
        assert "using gradinv's embedded default dataset instead" in capsys.readouterr().out
    else:
        assert run_flower.available_dataset("fashion-mnist") == "fashion-mnist"
    assert run_flower.available_dataset("default") == "default"
