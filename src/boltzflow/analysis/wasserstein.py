"""Wasserstein-2 distances: between energy distributions (E-W2) and on the torus (T-W2).

Both accept importance-weighted samples through log weights (``log_w = -u - log_q``, ``-inf``
for excluded samples), so a reweighted model is compared like raw samples or MD data.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ..sampling.reweight import resample_systematic


def _weighted_sorted(values: Tensor, log_w: Tensor | None, name: str) -> tuple[Tensor, Tensor]:
    """Sorted values ``[n]`` (float64) and the CDF ``[n]`` at each, dropping zero weights."""
    values = values.detach().to("cpu", torch.float64).flatten()
    if log_w is None:
        w = torch.ones_like(values)
    else:
        log_w = log_w.detach().to("cpu", torch.float64).flatten()
        if log_w.shape != values.shape:
            raise ValueError(f"log_w_{name} must have the same length as u_{name}")
        w = torch.softmax(log_w, 0)
    keep = w > 0
    values, w = values[keep], w[keep]
    if values.numel() == 0 or not torch.isfinite(w).all():
        raise ValueError(f"u_{name} has no sample with a finite, positive weight")
    values = torch.nan_to_num(values, nan=math.inf)
    order = torch.argsort(values)
    cdf = torch.cumsum(w[order], 0)
    cdf = cdf / cdf[-1]
    return values[order], cdf


def _quantile(sorted_values: Tensor, cdf: Tensor, t: Tensor) -> Tensor:
    """Generalized inverse CDF ``inf{v : F(v) >= t}`` at levels ``t`` in ``(0, 1)``."""
    return sorted_values[torch.searchsorted(cdf, t).clamp(max=len(cdf) - 1)]


def energy_w2(
    u_a: Tensor,
    u_b: Tensor,
    *,
    log_w_a: Tensor | None = None,
    log_w_b: Tensor | None = None,
    clip_quantile: float | None = None,
) -> float:
    """Exact Wasserstein-2 distance (kT) between two 1-D energy distributions.

    ``W2² = ∫₀¹ (F_a⁻¹(t) - F_b⁻¹(t))² dt`` with the quantile functions of the two (weighted)
    empirical distributions; the integrand is piecewise constant between the jumps of either
    CDF, so the integral is an exact finite sum (``O((B + M) log(B + M))``).

    Energies are *not* clipped by default: a few catastrophic model samples then dominate
    (honestly) the distance of raw samples. With ``clip_quantile=q`` both sets are clamped
    from above at the ``q``-quantile of the (weighted) reference ``u_b``, so every sample above
    the reference's high-energy tail counts as "at the tail" — a bounded, outlier-robust
    variant (transferable-samplers similarly clips high energies). NaN energies count as
    ``+inf``; samples with log weight ``-inf`` are dropped.

    Args:
        u_a: reduced energies ``[B]`` (e.g. model samples).
        u_b: reduced energies ``[M]`` (e.g. MD reference).
        log_w_a: optional log weights ``[B]`` of ``u_a`` (reweighted samples).
        log_w_b: optional log weights ``[M]`` of ``u_b``.
        clip_quantile: optional level in ``(0, 1]`` of the reference quantile to clamp at.

    Example:
        >>> energy_w2(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 2.0]))
        1.0
    """
    va, ca = _weighted_sorted(u_a, log_w_a, "a")
    vb, cb = _weighted_sorted(u_b, log_w_b, "b")
    if clip_quantile is not None:
        if not 0.0 < clip_quantile <= 1.0:
            raise ValueError(f"clip_quantile must be in (0, 1], got {clip_quantile}")
        u_max = _quantile(vb, cb, torch.tensor([clip_quantile], dtype=torch.float64))
        va, vb = torch.minimum(va, u_max), torch.minimum(vb, u_max)
    levels = torch.unique(torch.cat([torch.zeros(1, dtype=torch.float64), ca, cb]))
    dt = torch.diff(levels)
    mid = (levels[1:] + levels[:-1]) / 2
    qa, qb = _quantile(va, ca, mid), _quantile(vb, cb, mid)
    diff = torch.where(qa == qb, torch.zeros_like(qa), qa - qb)  # also +inf vs +inf
    sq = torch.where(dt > 0, dt * diff.square(), torch.zeros_like(dt))
    return math.sqrt(float(sq.sum()))


def _subsample(angles: Tensor, log_w: Tensor | None, n: int, generator: torch.Generator) -> Tensor:
    if log_w is not None:
        return angles[resample_systematic(log_w, n, generator=generator)]
    if len(angles) > n:
        return angles[torch.randperm(len(angles), generator=generator)[:n]]
    return angles


def torus_w2(
    angles_a: Tensor,
    angles_b: Tensor,
    *,
    log_w_a: Tensor | None = None,
    log_w_b: Tensor | None = None,
    max_points: int = 2000,
    seed: int = 0,
) -> float:
    """Wasserstein-2 distance (radians) between two point clouds of angles on the torus.

    The ground cost between two points is the squared geodesic distance on ``(S¹)^K``:
    ``Σ_k wrap(a_k - b_k)²`` with ``wrap`` into ``[-π, π)``. The optimal transport between two
    *equal-size uniform* clouds is an assignment, solved exactly by
    ``scipy.optimize.linear_sum_assignment`` (``O(n³)``: ~0.06 s at n = 1000, ~0.4 s at 2000).
    So both clouds are first brought to ``n`` points: weighted samples by systematic
    resampling to ``n = max_points``, unweighted ones by a random subset without replacement
    (kept whole when small); ``n`` is the smaller of the two sizes.

    The estimate is of the distance between empirical measures: it has a positive bias that
    shrinks with ``n`` (two independent 2000-point samples of one 2-D distribution with unit
    spread are ~0.15 apart), so compare numbers computed with the same ``max_points``.

    Args:
        angles_a: angles ``[B, K]`` in radians (e.g. φ, ψ of model samples).
        angles_b: angles ``[M, K]`` in radians (e.g. of MD reference frames).
        log_w_a: optional log weights ``[B]`` of ``angles_a``.
        log_w_b: optional log weights ``[M]`` of ``angles_b``.
        max_points: upper bound on the size ``n`` of the clouds that are matched.
        seed: seed of the subsampling / resampling.
    """
    a = angles_a.detach().to("cpu", torch.float64)
    b = angles_b.detach().to("cpu", torch.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(
            f"angles must have shapes [B, K] and [M, K], got {list(a.shape)} and {list(b.shape)}"
        )
    for name, angles, log_w in (("a", a, log_w_a), ("b", b, log_w_b)):
        if log_w is not None and log_w.shape != angles.shape[:1]:
            raise ValueError(f"log_w_{name} must have shape [{len(angles)}]")
        if len(angles) == 0:
            raise ValueError(f"angles_{name} is empty")
    if max_points < 1:
        raise ValueError(f"max_points must be positive, got {max_points}")
    n = min(
        max_points,
        len(a) if log_w_a is None else max_points,
        len(b) if log_w_b is None else max_points,
    )
    gen = torch.Generator().manual_seed(seed)
    a = _subsample(a, log_w_a, n, gen)
    b = _subsample(b, log_w_b, n, gen)
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        raise ValueError("angles must be finite")
    cost = torch.zeros(n, n, dtype=torch.float64)
    for k in range(a.shape[1]):  # one angle at a time: [n, n] memory, not [n, n, K]
        delta = torch.remainder(a[:, None, k] - b[None, :, k] + math.pi, 2 * math.pi) - math.pi
        cost += delta.square()
    cost = cost.numpy()
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(cost)
    return math.sqrt(float(np.mean(cost[rows, cols])))
