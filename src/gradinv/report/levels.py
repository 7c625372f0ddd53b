"""A sweep's defense levels (defense, strength setting, strength): how reports name and order
them, so that the table, the privacy-utility plot and the reconstruction grid agree."""
from __future__ import annotations

import math
from collections.abc import Iterable

Level = tuple[str, str | None, object]


def level_of(point: dict) -> Level:
    """The defense level of a results line's point."""
    return point["defense"], point["setting"], point["strength"]


def level_label(level: Level) -> str:
    """'none', 'prune 0.9', or the defense's name alone when it has no strength setting."""
    defense, _, strength = level
    return defense if strength is None else f"{defense} {strength:g}" if isinstance(
        strength, float) else f"{defense} {strength}"


def sorted_levels(levels: Iterable[Level]) -> list[Level]:
    """Undefended first, then each defense (in the order first seen) by increasing strength."""
    unique = list(dict.fromkeys(levels))
    families = list(dict.fromkeys(d for d, _, _ in unique if d != "none"))

    def key(level: Level) -> tuple:
        defense, _, strength = level
        number = isinstance(strength, (int, float)) and not isinstance(strength, bool)
        return (defense != "none", families.index(defense) if defense != "none" else -1,
                strength if number else math.inf, str(strength))

    return sorted(unique, key=key)
