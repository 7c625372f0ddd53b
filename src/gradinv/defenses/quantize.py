"""Quantisation of the update, per tensor: scaled sign (signSGD, Bernstein et al., ICML 2018,
with the scale of EF-SignSGD, Karimireddy et al., ICML 2019) or k-bit uniform levels."""
from __future__ import annotations

import torch

from ..checks import GradinvError, check_choice, check_int
from ..types import Params
from .base import ClientContext, UpdateDefense, register

MODES = ("sign", "uniform")


def uniform_grid(values: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The lowest level and the spacing of 2^bits evenly spaced levels spanning [min, max]."""
    low = values.min()
    return low, (values.max() - low) / (2**bits - 1)


def to_levels(values: torch.Tensor, low: torch.Tensor, step: torch.Tensor,
              bits: int) -> torch.Tensor:
    """Each entry rounded to the nearest of the 2^bits levels low + k * step (a zero step,
    a constant tensor, leaves the values as they are)."""
    safe = torch.where(step > 0, step, torch.ones_like(step))
    index = torch.round((values - low) / safe).clamp(0, 2**bits - 1)
    return torch.where(step > 0, low + index * safe, values)


@register
class Quantize(UpdateDefense):
    """Quantise every tensor of the update: ``mode="sign"`` sends sign(x) * mean|x|;
    ``mode="uniform"`` rounds to 2^``bits`` levels between the tensor's min and max.

    A knowing attacker quantises its simulated update the same way and passes the gradient
    straight through (the quantised value forward, the identity backward), since rounding and
    sign have zero gradient almost everywhere. Uniform levels are read off the observed tensor
    (its min and max are the extreme levels) instead of the candidate's own extremes, which
    move during the search. Measured with GI on LeNet (16 px, 300 iterations, 3 images): the
    candidate's own levels lost 1.5-2.3 dB against ignoring a known 2-bit quantisation, the
    observed levels gained 6-11 dB; for the sign, the candidate's own scale (9.7-13.0 dB above
    ignoring it) beat the observed scale (4.3-9.9 dB), so the sign keeps the client's rule.
    """

    name = "quantize"
    summary = "per-tensor quantisation: scaled sign, or k-bit uniform levels (bits=k)"

    def __init__(self, *, mode: str = "sign", bits: int | None = None) -> None:
        check_choice("mode", mode, MODES, where=self.name)
        if mode == "sign" and bits is not None:
            raise GradinvError(f"{self.name}: bits applies to mode 'uniform' only, not to 'sign'")
        if mode == "uniform":
            check_int("bits", bits, low=1, high=16, where=self.name)
        self.mode, self.bits = mode, bits

    def _grid(self, values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The client's per-tensor parameters: (scale,) for sign, (low, step) for uniform."""
        if self.mode == "sign":
            return (values.abs().mean(),)
        return uniform_grid(values, self.bits)  # type: ignore[arg-type]

    def _replay_grid(self, simulated: torch.Tensor,
                     observed: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The attacker's parameters: the candidate's own scale (sign), the observed levels
        (uniform)."""
        if self.mode == "sign":
            return self._grid(simulated)
        return uniform_grid(observed, self.bits)  # type: ignore[arg-type]

    def _quantize(self, values: torch.Tensor, grid: tuple[torch.Tensor, ...]) -> torch.Tensor:
        if self.mode == "sign":
            return values.sign() * grid[0]
        return to_levels(values, *grid, self.bits)  # type: ignore[arg-type]

    def apply(self, update: Params, *, generator: torch.Generator | None,
              client: ClientContext) -> Params:
        return {k: self._quantize(t, self._grid(t)) for k, t in update.items()}

    def replay(self, simulated: Params, observed: Params) -> Params:
        return {k: t + (self._quantize(t, self._replay_grid(t, observed[k])) - t).detach()
                for k, t in simulated.items()}
