"""Image-similarity metrics, and matching reconstructions to ground truth before scoring.

A reconstruction comes back in arbitrary order, so each reconstructed image is first assigned to
one ground-truth image by the optimal assignment on MSE (SciPy's ``linear_sum_assignment``).
An attack that diverged returns non-finite pixels: those images are reported as diverged and
scored as the blank grey image they carry no information beyond, never allowed to break the
matching. When the attacker guessed the wrong number of images, the pairs that can be matched
are scored and the count error is reported. Labels are scored as multisets: which classes the
batch holds (existence accuracy) and how many images of each (number accuracy), as in iLRG.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from scipy.optimize import linear_sum_assignment
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


def label_counts(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """How many images of each class (K,): a batch's labels as a multiset."""
    return torch.bincount(labels.cpu().long(), minlength=num_classes)


def label_accuracy(predicted: torch.Tensor, true: torch.Tensor, num_classes: int) -> float:
    """Fraction of the batch's labels recovered, counted as multisets (order does not matter):
    the label number accuracy of iLRG (Ma et al., ICLR 2023), sum_c min(k^_c, k_c) / n."""
    p, t = label_counts(predicted, num_classes), label_counts(true, num_classes)
    return float(torch.minimum(p, t).sum()) / len(true)


def label_existence_accuracy(predicted: torch.Tensor, true: torch.Tensor,
                             num_classes: int) -> float:
    """Fraction of the classes whose presence in the batch is predicted right: which classes
    a client holds, iLRG's label existence accuracy."""
    p, t = label_counts(predicted, num_classes), label_counts(true, num_classes)
    return float(((p > 0) == (t > 0)).double().mean())


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
    label_accuracy: float  # label number accuracy (see ``label_accuracy``)
    label_existence_accuracy: float
    label_counts: list[int]  # the reconstruction's labels per class
    true_label_counts: list[int]
    diverged: int = 0
    count_error: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def score(reconstructed: torch.Tensor, truth: torch.Tensor, *, predicted_labels: torch.Tensor,
          true_labels: torch.Tensor, num_classes: int) -> Scores:
    """Match reconstructions to ground truth by MSE, then compute every metric per image.

    ``order[i]`` is the reconstruction matched to the i-th matched truth image; with a wrong
    image count only min(len(truth), len(reconstructed)) pairs are scored.
    """
    reconstructed, truth = reconstructed.detach().float().cpu(), truth.detach().float().cpu()
    count_error = len(reconstructed) - len(truth)
    finite = torch.isfinite(reconstructed)
    diverged = int((~finite.flatten(1).all(1)).sum())
    reconstructed = torch.where(finite, reconstructed, torch.full_like(reconstructed, 0.5))
    pair_mse = (truth[:, None] - reconstructed[None]).pow(2).flatten(2).mean(2).numpy()
    rows, order = linear_sum_assignment(pair_mse)
    matched, truth = reconstructed[torch.from_numpy(order)], truth[torch.from_numpy(rows)]
    m, p, s = mse(matched, truth), psnr(matched, truth), ssim(matched, truth)
    return Scores(
        order=order.tolist(), mse=m.tolist(), psnr=p.tolist(), ssim=s.tolist(),
        mean_mse=float(m.mean()), mean_psnr=float(p.mean()), mean_ssim=float(s.mean()),
        best_psnr=float(p.max()),
        label_accuracy=label_accuracy(predicted_labels, true_labels, num_classes),
        label_existence_accuracy=label_existence_accuracy(predicted_labels, true_labels,
                                                          num_classes),
        label_counts=label_counts(predicted_labels, num_classes).tolist(),
        true_label_counts=label_counts(true_labels, num_classes).tolist(),
        diverged=diverged, count_error=count_error,
    )
