"""Importance weights, effective sample size and resampling, as pure functions.

All functions take log weights ``log_w: [B]`` (``log_w = log_p - log_q`` with the unnormalized
target ``log_p = -u``); only ratios of weights matter, so any constant offset is irrelevant.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def log_weights(u: Tensor, log_q: Tensor) -> Tensor:
    """Log importance weights ``log_w = -u - log_q`` ``[B]``; non-finite entries become ``-inf``.

    A sample whose energy or model density is NaN/inf gets zero weight instead of poisoning every
    estimate; count such samples with ``(~torch.isfinite(log_w)).sum()``.
    """
    log_w = -u - log_q
    return torch.where(torch.isfinite(log_w), log_w, torch.full_like(log_w, -math.inf))


def effective_sample_size(log_w: Tensor) -> float:
    """Kish effective sample size as a fraction in ``(0, 1]``: ``(Σw)² / (n Σw²)``.

    Example:
        >>> effective_sample_size(torch.zeros(10))
        1.0
    """
    log_w = log_w.detach().to(torch.float64).flatten()
    n = log_w.numel()
    if n == 0:
        raise ValueError("effective_sample_size needs at least one weight")
    if not torch.isfinite(log_w).any():
        return 0.0
    ess = torch.exp(2 * torch.logsumexp(log_w, 0) - torch.logsumexp(2 * log_w, 0)) / n
    return float(ess)


#: Below this many effective samples the reweighted numbers rest on a handful of samples (one
#: carries all the weight at 1); reports and tables say so.
FEW_EFFECTIVE_SAMPLES = 10


def few_effective_samples(ess_samples: float | None) -> bool:
    """Whether a Kish ESS of ``ess_samples`` (a count) is too few to trust reweighted numbers."""
    return ess_samples is not None and ess_samples < FEW_EFFECTIVE_SAMPLES


def clip_log_weights(log_w: Tensor, fraction: float = 0.002) -> Tensor:
    """Clip the largest ``fraction`` of log weights to the value at that quantile.

    Clipping trades a small bias for much lower variance (the default follows the 0.2 % used by
    transferable-samplers). ``fraction=0`` returns the weights unchanged.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    n_clip = math.floor(fraction * log_w.numel())
    if n_clip == 0:
        return log_w
    threshold = torch.topk(log_w.flatten(), n_clip + 1).values[-1]
    return torch.minimum(log_w, threshold)


def effective_sample_size_clipped(log_w: Tensor, fraction: float = 0.002) -> float:
    """Kish ESS after :func:`clip_log_weights` with the given ``fraction``."""
    return effective_sample_size(clip_log_weights(log_w, fraction))


def _normalized_weights(log_w: Tensor) -> Tensor:
    w = torch.softmax(log_w.detach().to(torch.float64).flatten(), 0)
    if not torch.isfinite(w).all():
        raise ValueError("all log weights are -inf: no sample has a finite weight")
    return w


def resample_multinomial(log_w: Tensor, n: int, generator: torch.Generator | None = None) -> Tensor:
    """Indices ``[n]`` drawn with replacement with probability proportional to ``exp(log_w)``."""
    w = _normalized_weights(log_w)
    return torch.multinomial(w, n, replacement=True, generator=generator)


def resample_systematic(log_w: Tensor, n: int, generator: torch.Generator | None = None) -> Tensor:
    """Systematic resampling: indices ``[n]`` with one uniform offset (lower variance)."""
    w = _normalized_weights(log_w)
    u0 = torch.rand((), generator=generator, dtype=torch.float64)
    points = (u0 + torch.arange(n, dtype=torch.float64)) / n
    cdf = torch.cumsum(w, 0)
    cdf[-1] = 1.0
    return torch.searchsorted(cdf, points, right=True).clamp(max=len(w) - 1)
