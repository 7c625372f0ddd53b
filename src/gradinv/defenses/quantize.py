"""Quantisation of the update, per tensor: scaled sign (signSGD, Bernstein et al., ICML 2018,
with the scale of EF-SignSGD, Karimireddy et al., ICML 2019) or k-bit uniform levels."""
from __future__ import annotations

import torch

from ..checks import check_choice, check_int
from ..types import GradinvError
from .base import ClientContext, Params, UpdateDefense, register

MODES = ("sign", "uniform")


def scaled_sign(values: torch.Tensor) -> torch.Tensor:
    """sign(x) times the mean |x| of the tensor: values in {-1, 0, +1} * scale."""
    return values.sign() * values.abs().mean()


def uniform_levels(values: torch.Tensor, bits: int) -> torch.Tensor:
    """Each entry rounded to the nearest of 2^bits evenly spaced levels spanning the tensor's
    [min, max] (a constant tensor is left as it is)."""
    low, high = values.min(), values.max()
    step = (high - low) / (2**bits - 1)
    safe = torch.where(step > 0, step, torch.ones_like(step))
    return torch.where(step > 0, low + torch.round((values - low) / safe) * safe, values)


@register
class Quantize(UpdateDefense):
    """Quantise every tensor of the update: ``mode="sign"`` sends sign(x) * mean|x|;
    ``mode="uniform"`` rounds to 2^``bits`` levels between the tensor's min and max.

    A knowing attacker quantises its simulated update the same way, with a straight-through
    gradient (the quantised value forward, the identity backward), since rounding and sign have
    zero gradient almost everywhere.
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

    def _quantize(self, values: torch.Tensor) -> torch.Tensor:
        if self.mode == "sign":
            return scaled_sign(values)
        return uniform_levels(values, self.bits)  # type: ignore[arg-type]

    def apply(self, update: Params, *, generator: torch.Generator | None,
              client: ClientContext) -> Params:
        return {k: self._quantize(t) for k, t in update.items()}

    def replay(self, simulated: Params, observed: Params) -> Params:
        return {k: t + (self._quantize(t) - t).detach() for k, t in simulated.items()}
