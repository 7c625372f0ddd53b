"""Gaussian noise on the update: with a fixed standard deviation, or as the Gaussian mechanism
calibrated to an (epsilon, delta)-DP target by a maintained accountant."""
from __future__ import annotations

from functools import lru_cache

import torch

from ..checks import GradinvError, check_choice, check_float, check_int
from ..types import Params
from .base import ClientContext, UpdateDefense, register
from .clip import clip_to_norm

# dp-accounting's neighbouring relations, by our names.
RELATIONS = {"add-remove": "ADD_OR_REMOVE_ONE", "replace": "REPLACE_ONE"}


def add_noise(update: Params, std: float, generator: torch.Generator | None) -> Params:
    """``update`` plus independent N(0, std^2) on every entry, drawn on the CPU from
    ``generator`` in the update's key order (the same draws on every device)."""
    if std == 0:
        return dict(update)
    return {k: t + std * torch.randn(t.shape, generator=generator, dtype=t.dtype).to(t.device)
            for k, t in update.items()}


@register
class Noise(UpdateDefense):
    """Add N(0, sigma^2) to every entry of the update (noise std 1e-4 ... 1e-1 in the GGL and
    GIFD defense grids; 0.01 by default). No privacy guarantee by itself: use ``dp-noise`` for
    one. A knowing attacker has nothing to replay (it does not know the client's draws)."""

    name = "noise"
    summary = "add Gaussian noise of standard deviation sigma to every entry"

    def __init__(self, *, sigma: float = 0.01, seed: int = 0) -> None:
        check_float("sigma", sigma, low=0, where=self.name)
        check_int("seed", seed, low=0, high=2**63 - 1, where=self.name)
        self.sigma, self.seed = sigma, seed

    def apply(self, update: Params, *, generator: torch.Generator | None,
              client: ClientContext) -> Params:
        return add_noise(update, self.sigma, generator)


@register
class DPNoise(UpdateDefense):
    """The Gaussian mechanism on the clipped update, calibrated to (epsilon, delta)-DP.

    The update is clipped to L2 norm ``max_norm`` (all tensors together), which bounds its
    sensitivity: ``max_norm`` under the add/remove-one relation (the client's contribution
    present or absent, DP-FedAvg's user-level DP, McMahan et al. ICLR 2018), twice that under
    ``relation="replace"`` (any other data of the client). Then N(0, (z max_norm)^2) is added to
    every entry, z being the smallest noise multiplier for which the privacy-loss-distribution
    accountant of Google's ``dp-accounting`` (``PLDAccountant``, Doroshenko et al. 2022) gives at
    most ``epsilon`` at ``delta`` after ``rounds`` such releases (the updates the client
    sends: a federation sets it to the most any client sends, ``over_federation``; no
    amplification by client sampling is claimed, the server knows who sent each update); for
    one release that is the analytic
    Gaussian mechanism's multiplier from the same library (exact, and instant at any epsilon).
    Needs ``pip install 'gradinv[dp]'``. A knowing attacker replays the clipping.
    """

    name = "dp-noise"
    summary = "Gaussian mechanism: clip to max_norm, noise calibrated to (epsilon, delta)"

    def __init__(self, *, epsilon: float, max_norm: float, delta: float = 1e-5, rounds: int = 1,
                 relation: str = "add-remove", seed: int = 0) -> None:
        check_float("epsilon", epsilon, low=0, low_open=True, where=self.name)
        check_float("max_norm", max_norm, low=0, low_open=True, where=self.name)
        check_delta(delta, where=self.name)
        check_int("rounds", rounds, low=1, where=self.name)
        check_choice("relation", relation, tuple(RELATIONS), where=self.name)
        check_int("seed", seed, low=0, high=2**63 - 1, where=self.name)
        self.max_norm, self.seed = max_norm, seed
        self.noise_multiplier = noise_multiplier(epsilon, delta, rounds, relation)
        self.std = self.noise_multiplier * max_norm

    @property
    def derived(self) -> dict:
        return {"noise_multiplier": self.noise_multiplier, "noise_std": self.std}

    def apply(self, update: Params, *, generator: torch.Generator | None,
              client: ClientContext) -> Params:
        return add_noise(clip_to_norm(update, self.max_norm), self.std, generator)

    def replay(self, simulated: Params, observed: Params) -> Params:
        return clip_to_norm(simulated, self.max_norm)

    protects = "each client's whole update (user-level: its data present or absent)"

    @classmethod
    def over_federation(cls, settings: dict, participations: int, local_steps: int) -> dict:
        return cover_releases(cls.name, settings, "rounds", participations,
                              "the updates a client sends")

    def spent_epsilon(self, participations: int, local_steps: int) -> float:
        return gaussian_epsilon(self.noise_multiplier, participations, self.settings["delta"],
                             self.settings["relation"])


def cover_releases(where: str, settings: dict, key: str, needed: int, what: str) -> dict:
    """``settings`` with ``key``, the releases an epsilon is calibrated for, set to ``needed``
    when not given; a given count below it is refused (its epsilon would be spent several
    times over), one above it kept (more noise than needed is the user's choice)."""
    given = settings.get(key)
    if given is None:
        return {**settings, key: needed}
    if isinstance(given, int) and not isinstance(given, bool) and given < needed:
        raise GradinvError(f"{where}: {key}={given} calibrates epsilon for {given} release(s), "
                           f"but {what} number up to {needed} in this federation; drop {key} "
                           f"(the federation sets it to {needed}) or give {key}={needed}")
    return settings


def check_delta(delta: float, *, where: str) -> None:
    """A DP delta strictly between 0 and 1: 0 would need infinite Gaussian noise, 1 promises
    nothing."""
    check_float("delta", delta, low=0, low_open=True, where=where)
    if delta >= 1:
        raise GradinvError(f"{where}: delta must be a finite number with 0 < delta < 1, not "
                           f"{delta!r}")


@lru_cache(maxsize=64)
def noise_multiplier(epsilon: float, delta: float, rounds: int, relation: str) -> float:
    """The smallest z such that ``rounds`` Gaussian mechanisms of noise multiplier z (std over
    sensitivity-1 clipping) are (epsilon, delta)-DP: one release is the analytic Gaussian
    mechanism (Balle & Wang 2018; instant at any epsilon), several are calibrated with the PLD
    accountant (which takes seconds, and half a minute from epsilon ~100 on). Replacing one
    record doubles the sensitivity of a sum, hence the noise."""
    dp = _dp_accounting()
    if rounds == 1:
        return float(dp.get_sigma_gaussian(epsilon, delta)) * (2.0 if relation == "replace"
                                                                else 1.0)
    neighbours = getattr(dp.NeighboringRelation, RELATIONS[relation])
    return float(dp.calibrate_dp_mechanism(
        lambda: dp.pld.PLDAccountant(neighbours),
        lambda z: dp.SelfComposedDpEvent(dp.GaussianDpEvent(z), rounds),
        epsilon, delta))


@lru_cache(maxsize=256)
def gaussian_epsilon(noise_multiplier: float, releases: int, delta: float,
                     relation: str) -> float:
    """The epsilon at ``delta`` of ``releases`` Gaussian mechanisms of ``noise_multiplier``,
    composed by the PLD accountant (0 for no release): what a client (or an example) has spent
    once it took part that often, whatever the calibration assumed."""
    if releases == 0:
        return 0.0
    dp = _dp_accounting()
    accountant = dp.pld.PLDAccountant(getattr(dp.NeighboringRelation, RELATIONS[relation]))
    accountant.compose(dp.GaussianDpEvent(noise_multiplier), releases)
    return float(accountant.get_epsilon(delta))


def _dp_accounting():
    try:
        import dp_accounting
    except ImportError:
        raise GradinvError("dp-noise calibrates its noise with Google's dp-accounting: "
                           "pip install 'gradinv[dp]'") from None
    return dp_accounting
