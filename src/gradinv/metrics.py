"""Image-similarity metrics, and matching reconstructions to ground truth before scoring.

A reconstruction comes back in arbitrary order, so each reconstructed image is first assigned to
one ground-truth image by the optimal assignment (Hungarian method) on MSE.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch.nn import functional as F


def mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image mean squared error of (N, C, H, W) batches."""
    return (a - b).pow(2).flatten(1).mean(1)


def psnr(a: torch.Tensor, b: torch.Tensor, peak: float = 1.0) -> torch.Tensor:
    """Per-image PSNR in dB (capped at 100 dB for identical images)."""
    return (10 * torch.log10(peak**2 / mse(a, b).clamp_min(1e-10))).clamp(max=100.0)


def _gaussian_window(size: int, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).float()


def ssim(a: torch.Tensor, b: torch.Tensor, peak: float = 1.0) -> torch.Tensor:
    """Per-image SSIM (Wang et al. 2004): 11x11 Gaussian window (sigma 1.5), channel mean.

    Images smaller than 11 px use the largest odd window that fits.
    """
    side = min(11, a.shape[-1], a.shape[-2])
    side -= 1 - side % 2
    c = a.shape[1]
    window = _gaussian_window(side).to(a)[None, None].expand(c, 1, side, side)
    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, window, groups=c)
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    score = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return score.flatten(1).mean(1)


def linear_sum_assignment(cost: np.ndarray) -> np.ndarray:
    """Minimum-cost perfect matching of a square matrix (Hungarian method, O(n^3)).

    Returns ``cols`` with row i assigned to column ``cols[i]``.
    """
    n = cost.shape[0]
    u, v = np.zeros(n + 1), np.zeros(n + 1)
    match = np.zeros(n + 1, dtype=int)  # match[col] = row (1-based), 0 = free
    for row in range(1, n + 1):
        match[0] = row
        col0 = 0
        minv = np.full(n + 1, np.inf)
        used = np.zeros(n + 1, dtype=bool)
        way = np.zeros(n + 1, dtype=int)
        while match[col0] != 0:
            used[col0] = True
            r = match[col0]
            delta, col1 = np.inf, 0
            for col in range(1, n + 1):
                if used[col]:
                    continue
                reduced = cost[r - 1, col - 1] - u[r] - v[col]
                if reduced < minv[col]:
                    minv[col], way[col] = reduced, col0
                if minv[col] < delta:
                    delta, col1 = minv[col], col
            for col in range(n + 1):
                if used[col]:
                    u[match[col]] += delta
                    v[col] -= delta
                else:
                    minv[col] -= delta
            col0 = col1
        while col0:
            prev = way[col0]
            match[col0] = match[prev]
            col0 = prev
    cols = np.zeros(n, dtype=int)
    for col in range(1, n + 1):
        cols[match[col] - 1] = col - 1
    return cols


def label_accuracy(predicted: torch.Tensor, true: torch.Tensor, num_classes: int) -> float:
    """Fraction of the batch's labels recovered, counted as multisets (order does not matter)."""
    p = torch.bincount(predicted.cpu(), minlength=num_classes)
    t = torch.bincount(true.cpu(), minlength=num_classes)
    return float(torch.minimum(p, t).sum()) / len(true)


@dataclass(frozen=True)
class Scores:
    """Metrics of one reconstruction against its ground truth, after matching."""

    order: list[int]
    mse: list[float]
    psnr: list[float]
    ssim: list[float]
    mean_mse: float
    mean_psnr: float
    mean_ssim: float
    best_psnr: float
    label_accuracy: float

    def to_dict(self) -> dict:
        return asdict(self)


def score(reconstructed: torch.Tensor, truth: torch.Tensor, *, predicted_labels: torch.Tensor,
          true_labels: torch.Tensor, num_classes: int) -> Scores:
    """Match reconstructions to ground truth by MSE, then compute every metric per image."""
    reconstructed, truth = reconstructed.detach().float().cpu(), truth.detach().float().cpu()
    pair_mse = (truth[:, None] - reconstructed[None]).pow(2).flatten(2).mean(2).numpy()
    order = linear_sum_assignment(pair_mse)
    matched = reconstructed[torch.from_numpy(order)]
    m, p, s = mse(matched, truth), psnr(matched, truth), ssim(matched, truth)
    return Scores(
        order=order.tolist(), mse=m.tolist(), psnr=p.tolist(), ssim=s.tolist(),
        mean_mse=float(m.mean()), mean_psnr=float(p.mean()), mean_ssim=float(s.mean()),
        best_psnr=float(p.max()),
        label_accuracy=label_accuracy(predicted_labels, true_labels, num_classes),
    )
