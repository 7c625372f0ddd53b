"""A registry per family (attacks, defenses): the CLI lists what exists, one contract test covers
every entry, and unknown names fail with the list of known ones."""
from __future__ import annotations

from typing import Generic, TypeVar

from .checks import GradinvError

T = TypeVar("T", bound=type)


class Registry(Generic[T]):
    """Classes by their ``name`` attribute; each also has a one-line ``summary``."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.classes: dict[str, T] = {}

    def register(self, cls: T) -> T:
        """Class decorator; a second class under the same name is a programming error."""
        if cls.name in self.classes:
            raise ValueError(f"{self.kind} {cls.name!r} is already registered")
        self.classes[cls.name] = cls
        return cls

    def available(self) -> dict[str, str]:
        """Registered names with their one-line summaries."""
        return {name: cls.summary for name, cls in sorted(self.classes.items())}

    def get(self, name: str) -> T:
        """The class registered as ``name``; an unknown name is the user's error."""
        if name not in self.classes:
            raise GradinvError(f"unknown {self.kind} {name!r}; choose one of "
                               f"{', '.join(sorted(self.classes))}")
        return self.classes[name]
