"""A small progress bar for long optimisations: step, current matching cost and ETA on stderr.

The value may be a 0-d tensor still on its device: it is read (one host-device sync) only
when the bar redraws, so an optimisation loop never waits for the device between redraws."""
from __future__ import annotations

import sys
import time
from typing import SupportsFloat


def _clock(seconds: float) -> str:
    s = int(max(seconds, 0))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Progress:
    """Redraws one line on a terminal; elsewhere (CI, logs) prints a line every 10 %."""

    def __init__(self, label: str, total: int, *, enabled: bool = True,
                 metric: str = "cost") -> None:
        self.label, self.total, self.enabled, self.metric = label, max(total, 1), enabled, metric
        self.start = time.monotonic()
        self.last_draw = 0.0
        self.last_decile = -1
        self.tty = sys.stderr.isatty()

    def update(self, step: int, value: SupportsFloat) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        done = step / self.total
        decile = int(done * 10)
        final = step >= self.total
        if self.tty and (now - self.last_draw < 0.2 and not final):
            return
        if not self.tty and decile == self.last_decile and not final:
            return
        self.last_draw, self.last_decile = now, decile
        elapsed = now - self.start
        eta = elapsed / done * (1 - done) if done > 0 else 0.0
        bar = "#" * int(done * 20)
        line = (f"{self.label} [{bar:<20}] {step}/{self.total} {self.metric} {float(value):.4g} "
                f"elapsed {_clock(elapsed)} eta {_clock(eta)}")
        end = "\n" if final or not self.tty else ""
        sys.stderr.write(("\r" if self.tty else "") + line + end)
        sys.stderr.flush()
