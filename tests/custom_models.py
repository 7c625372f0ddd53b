"""Client models written in plain torch.nn, as a Flower user's own code would be; the tests
name them by import path (tests/ is on sys.path when pytest runs)."""
from torch import nn


class TinyNet(nn.Sequential):
    """A convolution with torch BatchNorm2d and a linear classifier, for 1x16x16 images."""

    def __init__(self, width: int = 4) -> None:
        super().__init__(nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.Flatten(), nn.Linear(width * 16 * 16, 10))


def wide_net() -> TinyNet:
    """Not the recorded model: 6 channels instead of 4."""
    return TinyNet(width=6)


class Sequence1dNet(nn.Sequential):
    """A BatchNorm1d gradinv cannot convert."""

    def __init__(self) -> None:
        super().__init__(nn.Flatten(), nn.Linear(256, 8), nn.BatchNorm1d(8), nn.Linear(8, 10))
