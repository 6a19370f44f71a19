"""How alike two batches of maps are: Spearman rank correlation and SSIM, as the sanity checks use them.

Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018, https://arxiv.org/abs/1810.03292,
compare the map of a randomised model to the original one with both. Spearman is the Pearson
correlation of the average ranks (ties share their mean rank, as ``scipy.stats.rankdata``); SSIM is
Wang et al. 2004's structural similarity with a uniform ``win_size`` window and sample covariances,
averaged over the valid windows (``skimage.metrics.structural_similarity``'s defaults).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _flat_pair(a: torch.Tensor, b: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        raise TypeError(f"{name}: a and b must be tensors; got {type(a).__name__}, {type(b).__name__}")
    if a.shape != b.shape or a.dim() < 2:
        raise ValueError(f"{name}: a and b must be (B, ...) batches of one shape; got {a.shape}, {b.shape}")
    return a.detach().reshape(a.shape[0], -1).double(), b.detach().reshape(b.shape[0], -1).double()


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """Each row's 1-based ranks, ties sharing the mean of their ranks.

    Args:
        values: ``(B, N)``.

    Returns:
        ``(B, N)`` float64 ranks.
    """
    sorted_values, order = values.sort(dim=1, stable=True)
    count = values.shape[1]
    position = torch.arange(count, device=values.device).expand_as(order)
    starts = torch.ones_like(sorted_values, dtype=torch.bool)
    starts[:, 1:] = sorted_values[:, 1:] != sorted_values[:, :-1]
    ends = torch.ones_like(starts)
    ends[:, :-1] = starts[:, 1:]
    first = torch.where(starts, position, torch.zeros_like(position)).cummax(dim=1).values
    last_from_end = torch.where(ends, position, torch.full_like(position, count)).flip(1).cummin(dim=1)
    last = last_from_end.values.flip(1)
    ranks = torch.empty_like(sorted_values, dtype=torch.float64)
    ranks.scatter_(1, order, (first + last).double() / 2 + 1)
    return ranks


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise Pearson correlation of ``(B, N)`` rows: ``(B,)`` float64, NaN for a constant row."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(1) / ((a * a).sum(1) * (b * b).sum(1)).sqrt()


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation of each pair of maps.

    Args:
        a, b: ``(B, ...)`` maps of one shape.

    Returns:
        ``(B,)`` float64 in [-1, 1]; NaN where a map is constant (no ranking to compare).
    """
    a, b = _flat_pair(a, b, "spearman")
    return pearson(average_ranks(a), average_ranks(b))


def ssim(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    win_size: int = 7,
    data_range: float | None = None,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Mean structural similarity of each pair of 2D maps.

    ``S = (2 mu_a mu_b + C1)(2 s_ab + C2) / ((mu_a^2 + mu_b^2 + C1)(s_a^2 + s_b^2 + C2))`` in every
    ``win_size`` x ``win_size`` window that fits (no padding), with ``C = (k L)^2`` and sample
    (``n - 1``) variances; the mean over the windows.

    Args:
        a, b: ``(B, H, W)`` maps, ``H, W >= win_size``.
        win_size: the odd window side.
        data_range: ``L``. None: each pair's joint range ``max(a, b) - min(a, b)`` (1 where both
            maps are one constant), as quantus 0.6 passes it to scikit-image.

    Returns:
        ``(B,)`` float64, 1 for identical maps.
    """
    if not isinstance(win_size, int) or win_size < 3 or win_size % 2 == 0:
        raise ValueError(f"win_size must be an odd int >= 3; got {win_size!r}")
    if a.dim() != 3 or a.shape != b.shape:
        raise ValueError(
            f"ssim: a and b must be (B, H, W) of one shape; got {tuple(a.shape)}, {tuple(b.shape)}"
        )
    if min(a.shape[1:]) < win_size:
        raise ValueError(f"ssim: maps of {tuple(a.shape[1:])} are smaller than win_size={win_size}")
    a, b = a.detach().double()[:, None], b.detach().double()[:, None]
    if data_range is None:
        both = torch.cat([a, b], dim=1).flatten(1)
        span = both.max(dim=1).values - both.min(dim=1).values
        span = torch.where(span > 0, span, torch.ones_like(span)).view(-1, 1, 1, 1)
    else:
        span = torch.tensor(float(data_range), dtype=torch.float64, device=a.device)
    c1, c2 = (k1 * span) ** 2, (k2 * span) ** 2
    n = win_size * win_size
    mean = lambda x: F.avg_pool2d(x, win_size, stride=1)  # noqa: E731
    mu_a, mu_b = mean(a), mean(b)
    scale = n / (n - 1)
    var_a = scale * (mean(a * a) - mu_a * mu_a)
    var_b = scale * (mean(b * b) - mu_b * mu_b)
    cov = scale * (mean(a * b) - mu_a * mu_b)
    numerator = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    denominator = (mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2)
    return (numerator / denominator).flatten(1).mean(dim=1)
