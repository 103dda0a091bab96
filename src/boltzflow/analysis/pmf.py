"""Free-energy profiles (potentials of mean force) along one coordinate, and basin ΔF of φ."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .free_energy import (
    FreeEnergyDifference,
    free_energy_difference,
    free_energy_difference_blocked,
)


@dataclass(frozen=True)
class Profile:
    """A 1-D free-energy profile ``F(s) = -log p(s) + const`` in kT.

    Attributes:
        edges: bin edges ``[bins + 1]``.
        centers: bin centres ``[bins]``.
        F: free energy ``[bins]`` in kT, shifted so its minimum is 0; ``+inf`` in empty bins.
        F_err: standard error ``[bins]`` in kT (bootstrap, or block averaging for time-ordered
            MD frames); ``nan`` where it cannot be estimated.
        n_eff: Kish effective samples per bin ``[bins]``, ``(Σw)² / Σw²`` of the samples in
            it (the count, for unweighted samples); bins with few are noise.
        error_method: ``"bootstrap"`` or ``"block"``.
    """

    edges: Tensor
    centers: Tensor
    F: Tensor
    F_err: Tensor
    n_eff: Tensor | None = None
    error_method: str = "bootstrap"


def _log_density(bin_idx: Tensor, log_w: Tensor, widths: Tensor) -> Tensor:
    """``log(p_k / Δ_k)`` per bin; ``bin_idx == -1`` marks samples outside the range."""
    inside = bin_idx >= 0
    log_mass = torch.full_like(widths, -math.inf)
    if inside.any():
        w = torch.exp(log_w[inside] - log_w.max())
        mass = torch.zeros_like(widths).index_add_(0, bin_idx[inside], w)
        log_mass = torch.log(mass)
    return log_mass - torch.logsumexp(log_w, 0) + log_w.max() - torch.log(widths)


def free_energy_profile(
    values: Tensor,
    log_w: Tensor | None = None,
    bins: int | Tensor = 60,
    *,
    bounds: tuple[float, float] | None = None,
    n_bootstrap: int = 200,
    seed: int = 0,
    time_ordered: bool = False,
) -> Profile:
    """Free energy ``F_k = -log(p_k / Δ_k)`` (kT, minimum 0) of a coordinate, with error bars.

    ``p_k`` is the weighted fraction of samples in bin ``k`` (weights ``exp(log_w)``, all equal
    for MD data), ``Δ_k`` the bin width. The error of each bin is the standard deviation of
    ``-log(p_k / Δ_k)`` over ``n_bootstrap`` resamples (with replacement) of the samples —
    computed before the shift to minimum 0, so it is the error of that bin alone. For
    correlated, time-ordered MD frames (``time_ordered``) a bootstrap under-reports it; the
    error is then ``σ(p_k) / p_k`` with ``σ(p_k)`` from block averaging of the bin's indicator
    (:func:`.blocking.block_standard_error`).

    Args:
        values: the coordinate ``[B]`` (e.g. φ in radians).
        log_w: log weights ``[B]``; ``None`` for unweighted samples. ``-inf`` excludes a sample.
        bins: number of equal bins over ``bounds``, or the edges ``[bins + 1]`` themselves.
        bounds: ``(low, high)`` of the bins; default the range of ``values`` (use
            ``(-math.pi, math.pi)`` for a torsion). Samples outside count in the
            normalization but in no bin.
        n_bootstrap: bootstrap resamples for ``F_err`` (0: no errors, all ``nan``).
        seed: seed of the bootstrap.
        time_ordered: ``values`` are unweighted frames in time order: block errors.

    Example:
        >>> phi = torch.rand(1000) * 2 * math.pi - math.pi
        >>> profile = free_energy_profile(phi, bins=10, bounds=(-math.pi, math.pi))
        >>> profile.F.shape
        torch.Size([10])
    """
    values = values.detach().to("cpu", torch.float64).flatten()
    log_w = (
        torch.zeros_like(values)
        if log_w is None
        else log_w.detach().to("cpu", torch.float64).flatten()
    )
    if log_w.shape != values.shape:
        raise ValueError("values and log_w must have the same length")
    keep = torch.isfinite(log_w) & torch.isfinite(values)
    values, log_w = values[keep], log_w[keep]
    if values.numel() == 0:
        raise ValueError("free_energy_profile needs at least one sample with a finite weight")
    if isinstance(bins, int):
        low, high = bounds if bounds is not None else (float(values.min()), float(values.max()))
        if not high > low:
            raise ValueError(f"bounds must satisfy low < high, got ({low}, {high})")
        edges = torch.linspace(low, high, bins + 1, dtype=torch.float64)
    else:
        edges = torch.as_tensor(bins, dtype=torch.float64).flatten()
        if edges.numel() < 2 or not (torch.diff(edges) > 0).all():
            raise ValueError("bin edges must be increasing, with at least two of them")
    widths = torch.diff(edges)
    n_bins = len(widths)
    # right-closed last bin, so values == high land in it
    bin_idx = torch.searchsorted(edges, values, right=True) - 1
    bin_idx[values == edges[-1]] = n_bins - 1
    bin_idx[(bin_idx < 0) | (bin_idx >= n_bins)] = -1
    if (bin_idx < 0).all():
        raise ValueError("no sample lies inside the bins; check bounds / bin edges")

    log_p = _log_density(bin_idx, log_w, widths)
    F = -log_p - (-log_p).min()
    n_eff = _bin_effective_samples(bin_idx, log_w, n_bins)
    centers = (edges[1:] + edges[:-1]) / 2
    if time_ordered:
        if not (log_w == log_w[0]).all():
            raise ValueError("time_ordered errors are for unweighted MD frames (log_w=None)")
        F_err = _block_bin_errors(bin_idx, n_bins)
        return Profile(edges, centers, F, F_err, n_eff, "block")
    gen = torch.Generator().manual_seed(seed)
    reps = []
    for _ in range(n_bootstrap):
        idx = torch.randint(len(values), (len(values),), generator=gen)
        reps.append(-_log_density(bin_idx[idx], log_w[idx], widths))
    F_err = torch.full_like(F, math.nan)
    if reps:
        boot = torch.stack(reps)
        finite = torch.isfinite(boot)
        count = finite.sum(0)
        mean = torch.where(finite, boot, 0.0).sum(0) / count.clamp(min=1)
        var = torch.where(finite, (boot - mean).square(), 0.0).sum(0) / (count - 1).clamp(min=1)
        F_err = torch.where(count >= 2, var.sqrt(), F_err)
    return Profile(edges, centers, F, F_err, n_eff, "bootstrap")


def _bin_effective_samples(bin_idx: Tensor, log_w: Tensor, n_bins: int) -> Tensor:
    """Kish effective samples per bin ``[bins]``: ``(Σw)² / Σw²`` of the samples in it."""
    inside = bin_idx >= 0
    w = torch.exp(log_w[inside] - log_w.max())
    s1 = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, bin_idx[inside], w)
    s2 = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, bin_idx[inside], w.square())
    return torch.where(s2 > 0, s1.square() / s2.clamp_min(1e-300), torch.zeros_like(s1))


def _block_bin_errors(bin_idx: Tensor, n_bins: int) -> Tensor:
    """Block-averaging error ``[bins]`` of ``-log p_k`` of time-ordered frames (nan if empty)."""
    from .blocking import MIN_BLOCKS, block_standard_error

    err = torch.full((n_bins,), math.nan, dtype=torch.float64)
    if len(bin_idx) < 2 * MIN_BLOCKS:
        return err
    for k in torch.unique(bin_idx[bin_idx >= 0]).tolist():
        indicator = (bin_idx == k).double()
        err[k] = block_standard_error(indicator).stderr / indicator.mean()
    return err


def basin_free_energy_difference(
    phi: Tensor,
    log_w: Tensor | None = None,
    *,
    phi_max: float = math.pi,
    n_bootstrap: int = 200,
    seed: int = 0,
    time_ordered: bool = False,
) -> FreeEnergyDifference:
    """``ΔF = F(0 ≤ φ ≤ phi_max) - F(φ < 0)`` in kT, with a bootstrap or block error.

    For alanine dipeptide this is the free energy of the left-handed basins (C7ax, αL) relative
    to the right-handed / extended ones (C7eq, αR, β). The default ``phi_max = π`` splits the
    circle at φ = 0 and φ = ±π; some works use ``phi_max ≈ 2.2`` so that the tail of the β
    basin beyond φ ≈ 2.2 is left out of the positive basin.

    Args:
        phi: backbone dihedral ``[B]`` in radians, in ``(-π, π]``.
        log_w: log weights ``[B]``; ``None`` for unweighted (MD) samples.
        phi_max: upper end of the positive basin (radians).
        n_bootstrap: bootstrap resamples for the standard error.
        seed: seed of the bootstrap.
        time_ordered: ``phi`` are unweighted MD frames in time order: the error comes from
            block averaging (:func:`.free_energy.free_energy_difference_blocked`), since a
            bootstrap over correlated frames under-reports it.
    """
    phi = phi.detach().to("cpu").flatten()
    if time_ordered:
        if log_w is not None:
            raise ValueError("time_ordered errors are for unweighted MD frames (log_w=None)")
        return free_energy_difference_blocked(phi < 0, (phi >= 0) & (phi <= phi_max))
    log_w = torch.zeros(len(phi), dtype=torch.float64) if log_w is None else log_w
    return free_energy_difference(
        log_w, phi < 0, (phi >= 0) & (phi <= phi_max), n_bootstrap=n_bootstrap, seed=seed
    )
