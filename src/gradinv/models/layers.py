"""Layers that behave well under ``torch.func.vmap`` (restarts and per-image copies are vmapped)."""
from __future__ import annotations

import torch
from torch import nn


class BatchNorm2d(nn.BatchNorm2d):
    """BatchNorm whose eval mode is written as the per-channel affine map it is.

    PyTorch has no vmap batching rule for eval-mode batch norm and falls back to a slow loop;
    the affine form vmaps cleanly. ``freeze_stats()`` makes train mode use batch statistics
    without updating the running buffers, which is what an attacker simulating the client needs
    (in-place buffer updates are impossible inside vmap and must not leak into the model anyway).
    """

    stats_frozen: bool = False

    def freeze_stats(self) -> None:
        self.stats_frozen = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and not self.stats_frozen:
            return super().forward(x)
        if self.training:
            mean = x.mean(dim=(0, 2, 3))
            var = x.var(dim=(0, 2, 3), unbiased=False)
        else:
            mean, var = self.running_mean, self.running_var
        scale = self.weight * torch.rsqrt(var + self.eps)
        shift = self.bias - mean * scale
        return x * scale[:, None, None] + shift[:, None, None]
