"""The simulated client's model and data, named the same way by a fresh audit
(``audit.batch.AuditConfig``) and by a federation (``fl.federation.FederationConfig``)."""
from __future__ import annotations

from dataclasses import dataclass

from ..checks import MAX_SIZE, check_choice, check_int
from ..data import DATASETS
from ..models import INIT_SCHEMES, available_models, check_width, default_init_scheme


@dataclass(frozen=True)
class VictimConfig:
    """Which architecture (its width and initialisation), which dataset (and where its files
    are), at what input size. Subclasses set their own defaults."""

    model: str = "lenet"
    width: int | None = None
    init_scheme: str | None = None  # None: the model's reference scheme, stored resolved
    dataset: str = "default"
    data_dir: str | None = None
    image_size: int = 32
    channels: int = 3

    def __post_init__(self) -> None:
        check_choice("model", self.model, available_models())
        check_width(self.model, self.width)
        # Record what is actually used, not "default": the scheme changes how much leaks.
        if self.init_scheme is None:
            object.__setattr__(self, "init_scheme", default_init_scheme(self.model))
        check_choice("init_scheme", self.init_scheme, sorted(INIT_SCHEMES))
        check_choice("dataset", self.dataset, DATASETS)
        check_int("image_size", self.image_size, low=4, high=MAX_SIZE)
        check_int("channels", self.channels, low=1, high=MAX_SIZE)
