"""Importance weights, effective sample size and resampling, as pure functions.

All functions take log weights ``log_w: [B]`` (``log_w = log_p - log_q`` with the unnormalized
target ``log_p = -u``); only ratios of weights matter, so any constant offset is irrelevant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
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


#: The weights' Pareto tail index at which their variance becomes infinite: from there on a
#: few samples decide a reweighted estimate and the ESS of one draw is not a stable number.
HEAVY_TAIL_INDEX = 0.5


def heavy_tail(tail_index: float) -> bool:
    """Whether weights with this Pareto tail index (``ESSInterval.tail_index``) have infinite
    variance (at least :data:`HEAVY_TAIL_INDEX`)."""
    return tail_index >= HEAVY_TAIL_INDEX


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


#: The standard normal's CDF at 1.
_ONE_SIGMA = 0.5 * (1 + math.erf(1 / math.sqrt(2)))


def log_weight_spread(log_w: Tensor) -> float:
    """How far the log-weights spread above their median: the 84.1th percentile minus the
    median of the finite ``log_w`` (nats; NaN without finite weights).

    For Gaussian log-weights with standard deviation ``σ`` this estimates ``σ``, and the Kish
    ESS of many samples tends to ``exp(-σ²)``: a 10 % ESS needs ``σ ≲ 1.5``, 40 % ``σ ≲ 0.96``.
    Unlike the ESS of one draw, which a few of the largest weights decide, it is set by the
    bulk of the samples, so it moves little between draws and ranks models whose ESS is a
    handful of samples; the lower tail (clashing samples, weight ≈ 0) does not enter it.

    Example:
        >>> round(log_weight_spread(torch.randn(100_000, generator=torch.Generator().manual_seed(0))), 2)
        1.0
    """
    log_w = log_w.detach().to(torch.float64).flatten()
    log_w = log_w[torch.isfinite(log_w)]
    if log_w.numel() == 0:
        return math.nan
    median, upper = np.quantile(log_w.cpu().numpy(), [0.5, _ONE_SIGMA])  # any size, unlike torch's
    return float(upper - median)



def largest_weight(log_w: Tensor) -> float:
    """The largest normalized weight ``max w / Σw`` in ``(0, 1]`` (1: one sample carries all)."""
    return float(_normalized_weights(log_w).max())


@dataclass(frozen=True)
class ESSInterval:
    """A Kish ESS (fraction) with the interval it would range over on another draw.

    Attributes:
        ess: the Kish ESS of the draw, as a fraction of its samples.
        low: lower end of the interval (fraction).
        high: upper end of the interval (fraction).
        level: coverage the interval aims at (e.g. 0.9).
        tail_index: shape ``ξ`` of a generalized Pareto tail fitted to the largest weights
            (the ``k̂`` of Pareto-smoothed importance sampling); at ``ξ ≥ 0.5`` their
            variance is infinite and the ESS of any draw is not a stable number.
    """

    ess: float
    low: float
    high: float
    level: float
    tail_index: float


def _generalized_pareto_fit(excess: Tensor) -> tuple[float, float]:
    """Shape ``ξ`` and scale ``σ`` of a generalized Pareto distribution fitted to ``excess > 0``.

    The empirical-Bayes estimate of Zhang & Stephens (Technometrics 2009) with the weak prior on
    ``ξ`` of Vehtari et al.'s Pareto-smoothed importance sampling (JMLR 2024), the ``k̂`` that
    PSIS reports: the profile likelihood over a grid of ``θ = −ξ/σ`` averaged by its weights.
    """
    x = torch.sort(excess.to(torch.float64)).values
    n = len(x)
    m = 30 + int(math.sqrt(n))
    theta = 1.0 - torch.sqrt(m / (torch.arange(1, m + 1, dtype=torch.float64) - 0.5))
    theta = theta / (3.0 * x[int(n / 4 + 0.5) - 1]) + 1.0 / x[-1]
    k = torch.log1p(-theta[:, None] * x).mean(dim=1)
    profile = n * (torch.log(-theta / k) - k - 1.0)
    weights = torch.softmax(profile, dim=0)
    theta_hat = float((theta * weights).sum())
    xi = float(torch.log1p(-theta_hat * x).mean())
    sigma = -xi / theta_hat
    return (n * xi + 10 * 0.5) / (n + 10), sigma


def _pareto_tail(w: Tensor) -> tuple[float, float, float]:
    """Threshold ``t``, tail index ``ξ`` and scale ``σ`` of a generalized Pareto tail fitted to
    the excesses over ``t`` of the largest ``min(n/5, 3√n)`` weights ``[B]``.

    ``σ = ξ t`` (a pure Pareto tail, the Hill estimate of ``ξ``) where the excesses cannot be
    fitted: fewer than five of them, or a quarter of them tied at the threshold.
    """
    n = len(w)
    m = max(1, int(min(0.2 * n, 3 * math.sqrt(n))))
    top = torch.topk(w, m + 1).values
    threshold = float(top[-1])
    if threshold <= 0:
        return math.inf, 0.0, 0.0
    excess = (top[:-1] - threshold).flip(0)  # ascending: topk sorts largest first
    if m >= 5 and float(excess[int(m / 4 + 0.5) - 1]) > 0:
        xi, sigma = _generalized_pareto_fit(excess)
        if math.isfinite(xi) and math.isfinite(sigma) and sigma > 0:
            return threshold, xi, sigma
    xi = float(torch.log(top[:-1] / threshold).mean())
    return threshold, xi, xi * threshold


def _tail_draws(u: Tensor, threshold: float, xi: float, sigma: float) -> Tensor:
    """Weights above ``threshold`` from the generalized Pareto tail, by inverting its CDF at ``u``."""
    if abs(xi) < 1e-8:
        return threshold - sigma * torch.log(u)
    return threshold + sigma / xi * (u ** (-xi) - 1.0)


def effective_sample_size_interval(
    log_w: Tensor, *, level: float = 0.9, n_bootstrap: int = 200, seed: int = 0,
) -> ESSInterval:
    """Kish ESS with a bootstrap interval whose resamples redraw the weights' heavy tail.

    A plain bootstrap over samples cannot produce a weight larger than the largest one seen,
    and the largest weights are what a heavy-tailed Kish ESS hinges on: its intervals miss the
    truth most of the time. Here the excesses of the largest ``min(n/5, 3√n)`` weights over
    the next one define a generalized Pareto tail (shape ``ξ`` and scale ``σ``, fitted as
    PSIS's ``k̂``); every resample draws its weights above that threshold afresh from the
    tail, so it sees the rare heavier weights another draw could bring. On proposal
    ``N(0, 0.8²)`` for target ``N(0, 1)`` (true ESS 0.83, ``ξ ≈ 0.36``) the 90 % interval
    covers the truth in about 85-95 % of draws, a plain bootstrap in about 60 %. Where the
    proposal under-populates a mode, the few samples there carry weights far above the rest:
    a pure Pareto tail (``σ = ξ t``, the Hill estimate) fitted to them redraws them too light
    and its interval sat above the truth in most draws; the scale fitted apart from the shape
    does not (``tests/sampling/test_uncertainty.py``).

    Args:
        log_w: log weights ``[B]``; ``-inf`` counts as a sample of weight 0.
        level: central coverage of the interval.
        n_bootstrap: resamples.
        seed: seed of the resamples.
    """
    log_w = log_w.detach().to("cpu", torch.float64).flatten()
    ess = effective_sample_size(log_w)
    if ess == 0.0:
        return ESSInterval(0.0, 0.0, 0.0, level, math.nan)
    w = torch.exp(log_w - log_w.max())
    threshold, xi, sigma = _pareto_tail(w)
    gen = torch.Generator().manual_seed(seed)
    n = len(w)
    reps = torch.empty(n_bootstrap, dtype=torch.float64)
    for b in range(n_bootstrap):
        r = w[torch.randint(n, (n,), generator=gen)]
        tail = r > threshold
        u = torch.rand(int(tail.sum()), generator=gen, dtype=torch.float64)
        r[tail] = _tail_draws(u.clamp_min(1e-300), threshold, xi, sigma)
        reps[b] = r.sum() ** 2 / (n * r.square().sum())
    a = (1.0 - level) / 2
    low, high = torch.quantile(reps, torch.tensor([a, 1.0 - a], dtype=torch.float64)).tolist()
    return ESSInterval(ess, min(low, ess), max(high, ess), level, xi)
