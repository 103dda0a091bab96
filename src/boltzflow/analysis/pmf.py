"""Free-energy profiles (potentials of mean force) along one coordinate, and basin ΔF of φ."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .free_energy import FreeEnergyDifference, free_energy_difference


@dataclass(frozen=True)
class Profile:
    """A 1-D free-energy profile ``F(s) = -log p(s) + const`` in kT.

    Attributes:
        edges: bin edges ``[bins + 1]``.
        centers: bin centres ``[bins]``.
        F: free energy ``[bins]`` in kT, shifted so its minimum is 0; ``+inf`` in empty bins.
        F_err: bootstrap standard error ``[bins]`` in kT; ``nan`` where fewer than two
            bootstrap replicates had the bin populated.
    """

    edges: Tensor
    centers: Tensor
    F: Tensor
    F_err: Tensor


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
) -> Profile:
    """Free energy ``F_k = -log(p_k / Δ_k)`` (kT, minimum 0) of a coordinate, with error bars.

    ``p_k`` is the weighted fraction of samples in bin ``k`` (weights ``exp(log_w)``, all equal
    for MD data), ``Δ_k`` the bin width. The error of each bin is the standard deviation of
    ``-log(p_k / Δ_k)`` over ``n_bootstrap`` resamples (with replacement) of the samples —
    computed before the shift to minimum 0, so it is the error of that bin alone. Correlated
    samples (MD frames) make it an underestimate; subsample or use decorrelated frames.

    Args:
        values: the coordinate ``[B]`` (e.g. φ in radians).
        log_w: log weights ``[B]``; ``None`` for unweighted samples. ``-inf`` excludes a sample.
        bins: number of equal bins over ``bounds``, or the edges ``[bins + 1]`` themselves.
        bounds: ``(low, high)`` of the bins; default the range of ``values`` (use
            ``(-math.pi, math.pi)`` for a torsion). Samples outside count in the
            normalization but in no bin.
        n_bootstrap: bootstrap resamples for ``F_err`` (0: no errors, all ``nan``).
        seed: seed of the bootstrap.

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
    return Profile(edges=edges, centers=(edges[1:] + edges[:-1]) / 2, F=F, F_err=F_err)


def basin_free_energy_difference(
    phi: Tensor,
    log_w: Tensor | None = None,
    *,
    phi_max: float = math.pi,
    n_bootstrap: int = 200,
    seed: int = 0,
) -> FreeEnergyDifference:
    """``ΔF = F(0 ≤ φ ≤ phi_max) - F(φ < 0)`` in kT, with a bootstrap error.

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
    """
    phi = phi.detach().to("cpu").flatten()
    log_w = torch.zeros(len(phi), dtype=torch.float64) if log_w is None else log_w
    return free_energy_difference(
        log_w, phi < 0, (phi >= 0) & (phi <= phi_max), n_bootstrap=n_bootstrap, seed=seed
    )
