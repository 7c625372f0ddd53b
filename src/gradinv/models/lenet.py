"""The sigmoid LeNet of "Deep Leakage from Gradients" (Zhu et al., NeurIPS 2019)."""
from __future__ import annotations

import math

import torch
from torch import nn


class LeNet(nn.Module):
    """Three 5x5 conv layers with sigmoid activations and one linear layer.

    Sigmoids (twice differentiable everywhere) and the uniform(-0.5, 0.5) initialisation of DLG
    (``build_model``'s default init scheme for it, ``dlg-uniform``) make this the easiest model
    to invert: it is the historical baseline.
    """

    def __init__(self, channels: int = 3, num_classes: int = 10, image_size: int = 32) -> None:
        super().__init__()
        width = 12
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 5, padding=2, stride=2), nn.Sigmoid(),
            nn.Conv2d(width, width, 5, padding=2, stride=2), nn.Sigmoid(),
            nn.Conv2d(width, width, 5, padding=2, stride=1), nn.Sigmoid(),
        )
        side = math.ceil(math.ceil(image_size / 2) / 2)
        self.classifier = nn.Linear(width * side * side, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))
