"""DCGAN generator and discriminator (Radford et al. 2016) for 32 or 64 px, any channel count.

The generator's layer layout matches the PyTorch DCGAN tutorial (``main.0`` ... ``main.N``), so
weights trained with that tutorial's code (such as the DigiFace-1M face generator of the
``gan-face-generate`` package) load into it unchanged.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..models.layers import BatchNorm2d
from ..checks import GradinvError


def _stages(image_size: int) -> int:
    if image_size not in (32, 64):
        raise GradinvError(f"the DCGAN supports 32 or 64 px output, not {image_size}")
    return int(math.log2(image_size // 4))


class DCGANGenerator(nn.Module):
    """z (N, nz) -> images (N, channels, size, size) in [-1, 1] (tanh)."""

    def __init__(self, *, latent_dim: int = 100, width: int = 64, channels: int = 1,
                 image_size: int = 32) -> None:
        super().__init__()
        self.latent_dim, self.width, self.channels, self.image_size = (
            latent_dim, width, channels, image_size)
        stages = _stages(image_size)
        cout = width * 2 ** (stages - 1)
        layers: list[nn.Module] = [nn.ConvTranspose2d(latent_dim, cout, 4, 1, 0, bias=False),
                                   BatchNorm2d(cout), nn.ReLU()]
        for _ in range(stages - 1):
            layers += [nn.ConvTranspose2d(cout, cout // 2, 4, 2, 1, bias=False),
                       BatchNorm2d(cout // 2), nn.ReLU()]
            cout //= 2
        layers += [nn.ConvTranspose2d(cout, channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        self.apply(dcgan_init)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z.reshape(z.shape[0], -1, 1, 1))

    def settings(self) -> dict:
        return {"latent_dim": self.latent_dim, "width": self.width, "channels": self.channels,
                "image_size": self.image_size}


class DCGANDiscriminator(nn.Module):
    """images (N, channels, size, size) in [-1, 1] -> one real/fake logit per image."""

    def __init__(self, *, width: int = 64, channels: int = 1, image_size: int = 32) -> None:
        super().__init__()
        stages = _stages(image_size)
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 4, 2, 1, bias=False),
                                   nn.LeakyReLU(0.2)]
        cin = width
        for _ in range(stages - 1):
            layers += [nn.Conv2d(cin, cin * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(cin * 2),
                       nn.LeakyReLU(0.2)]
            cin *= 2
        layers += [nn.Conv2d(cin, 1, 4, 1, 0, bias=False)]
        self.main = nn.Sequential(*layers)
        self.apply(dcgan_init)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.main(images).flatten()


def dcgan_init(module: nn.Module) -> None:
    """N(0, 0.02) convolutions, N(1, 0.02) BatchNorm scales: the DCGAN paper's initialisation."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.modules.batchnorm._BatchNorm):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
