"""The check every bad-file test makes: the error is one short line naming what is wrong."""
import pytest


def assert_one_line(err: pytest.ExceptionInfo, *needles: str) -> None:
    text = str(err.value)
    assert "\n" not in text and len(text) < 400, text
    for needle in needles:
        assert needle in text, (needle, text)
