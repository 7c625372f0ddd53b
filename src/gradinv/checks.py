"""Checks of user-given settings, and the error they raise: one line naming what is wrong.

Every public constructor that takes numbers (attacks, ``ThreatModel``, ``FedAvgConfig``, prior
training) validates them here, so a string, a NaN or a negative count fails where it was given
instead of deep inside an optimisation loop, or worse, not at all.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Collection

# Upper bounds, far beyond any useful setting but low enough that a typo such as 2**64 is refused
# here instead of looping without end or overflowing inside torch: every integer setting is at
# most MAX_COUNT (iterations, restarts, epochs, rounds, clients, images) unless it says otherwise,
# and sizes (image side, channels, model and generator width, latent size) at most MAX_SIZE.
MAX_COUNT = 10**9
MAX_SIZE = 4096


# Learning rates and loss weights beyond this overflow float32 arithmetic (1e300 is finite in
# Python but not in an optimiser's float32 state) and are never meaningful.
MAX_RATE = 1e6


class GradinvError(Exception):
    """An error caused by the user's input; the CLI prints it as one line."""


def check_int(name: str, value: object, *, low: int | None = None, high: int = MAX_COUNT,
              optional: bool = False, where: str = "") -> None:
    """An integer (a bool is not one) in [low, high]; also None when ``optional``. ``where``
    (an attack's or a prior's name) prefixes the message."""
    if optional and value is None:
        return
    is_int = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not is_int or not _within(value, low, high, low_open=False):  # type: ignore[arg-type]
        _refuse(name, value, "an integer", low, high, low_open=False, optional=optional,
                where=where)


def check_float(name: str, value: object, *, low: float | None = None, high: float | None = None,
                low_open: bool = False, optional: bool = False, where: str = "") -> None:
    """A finite real number (a bool is not one) in [low, high], or (low, high] if ``low_open``."""
    if optional and value is None:
        return
    is_real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not is_real or not _finite(value) or not _within(value, low, high, low_open):  # type: ignore[arg-type]
        _refuse(name, value, "a finite number", low, high, low_open=low_open, optional=optional,
                where=where)


def check_bool(name: str, value: object, *, where: str = "") -> None:
    """Exactly True or False: 'yes', 1 or None are refused rather than read as truthy."""
    if not isinstance(value, bool):
        raise GradinvError(f"{_prefix(where)}{name} must be True or False, not {_show(value)}")


def check_choice(name: str, value: object, choices: Collection[str], *, where: str = "") -> None:
    """One of ``choices`` (strings); anything else, unhashable values included, is refused."""
    if not isinstance(value, str) or value not in choices:
        raise GradinvError(f"{_prefix(where)}unknown {name} {_show(value)}; choose one of "
                           f"{', '.join(map(repr, choices))}")


def one_line(err: BaseException) -> str:
    """An exception from code we do not control (torch, user modules) as 'Type: first line'."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0][:160]}" if lines else type(err).__name__


def _finite(value: numbers.Real) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _within(value: float, low: float | None, high: float | None, low_open: bool) -> bool:
    above = low is None or (value > low if low_open else value >= low)
    return above and (high is None or value <= high)


def _refuse(name: str, value: object, kind: str, low: float | None, high: float | None, *,
            low_open: bool, optional: bool, where: str) -> None:
    rule = kind
    if low is not None and high is not None:
        rule += f" with {low} {'<' if low_open else '<='} {name} <= {high}"
    elif low is not None:
        rule += f" with {name} {'>' if low_open else '>='} {low}"
    elif high is not None:
        rule += f" with {name} <= {high}"
    raise GradinvError(f"{_prefix(where)}{name} must be {rule}{' (or unset)' if optional else ''}, "
                       f"not {_show(value)}")


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _prefix(where: str) -> str:
    return f"{where}: " if where else ""
