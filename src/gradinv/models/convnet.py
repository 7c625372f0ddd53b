"""A plain VGG-style ConvNet whose width is a parameter (as in Geiping et al.'s experiments)."""
from __future__ import annotations

import torch
from torch import nn

from .layers import BatchNorm2d


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), BatchNorm2d(cout), nn.ReLU()]


class ConvNet(nn.Module):
    """conv-BN-ReLU x 5 with two 2x2 max-pools, global average pooling and a linear head."""

    def __init__(self, channels: int = 3, num_classes: int = 10, width: int = 32) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            *_conv_bn_relu(channels, w), *_conv_bn_relu(w, 2 * w), nn.MaxPool2d(2),
            *_conv_bn_relu(2 * w, 2 * w), *_conv_bn_relu(2 * w, 4 * w), nn.MaxPool2d(2),
            *_conv_bn_relu(4 * w, 4 * w), nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Linear(4 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))
