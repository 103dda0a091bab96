"""Free-energy differences between regions from weighted samples, with bootstrap error bars."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..energies.base import Energy


@dataclass(frozen=True)
class FreeEnergyDifference:
    """``value = F_B - F_A`` in kT and its standard error.

    Attributes:
        value: ``F_B - F_A`` (kT).
        stderr: its standard error (kT).
        method: how ``stderr`` was estimated: ``"bootstrap"`` (independent samples) or
            ``"block"`` (block averaging of a time series, :mod:`.blocking`).
    """

    value: float
    stderr: float
    method: str = "bootstrap"

    def __str__(self) -> str:
        return f"{self.value:.3f} ± {self.stderr:.3f} kT"


def _delta_f(log_w: Tensor, in_a: Tensor, in_b: Tensor) -> Tensor:
    neg_inf = torch.tensor(-math.inf, dtype=log_w.dtype)
    log_za = torch.logsumexp(torch.where(in_a, log_w, neg_inf), -1)
    log_zb = torch.logsumexp(torch.where(in_b, log_w, neg_inf), -1)
    return -(log_zb - log_za)


def free_energy_difference(
    log_w: Tensor,
    in_a: Tensor,
    in_b: Tensor,
    *,
    n_bootstrap: int = 200,
    seed: int = 0,
) -> FreeEnergyDifference:
    """``ΔF = F_B - F_A = -log(Σ_{x∈B} w / Σ_{x∈A} w)`` in kT, with a bootstrap error.

    Args:
        log_w: log importance weights ``[B]`` (zeros for unweighted MD samples).
        in_a: boolean mask ``[B]`` of samples in region A.
        in_b: boolean mask ``[B]`` of samples in region B.
        n_bootstrap: bootstrap resamples for the standard error.
        seed: seed of the bootstrap.

    Raises:
        ValueError: if a region holds no sample with finite weight.
    """
    log_w = log_w.detach().to(torch.float64).flatten()
    in_a, in_b = in_a.flatten().bool(), in_b.flatten().bool()
    if not (log_w.shape == in_a.shape == in_b.shape):
        raise ValueError("log_w, in_a and in_b must have the same length")
    finite = torch.isfinite(log_w)
    for name, mask in (("A", in_a), ("B", in_b)):
        if not (mask & finite).any():
            raise ValueError(f"region {name} holds no sample with a finite weight")
    value = float(_delta_f(log_w, in_a, in_b))
    gen = torch.Generator().manual_seed(seed)
    n = log_w.numel()
    stats = []
    for _ in range(n_bootstrap):
        idx = torch.randint(n, (n,), generator=gen)
        stats.append(_delta_f(log_w[idx], in_a[idx], in_b[idx]))
    boot = torch.stack(stats)
    boot = boot[torch.isfinite(boot)]
    stderr = float(boot.std()) if boot.numel() > 1 else math.inf
    return FreeEnergyDifference(value=value, stderr=stderr)


def free_energy_difference_blocked(in_a: Tensor, in_b: Tensor) -> FreeEnergyDifference:
    """``ΔF = F_B - F_A = -log(n_B / n_A)`` of unweighted, time-ordered frames (MD), with a
    block-averaging error.

    The error is that of the mean of ``g_t = 1[t ∈ A] / p_A - 1[t ∈ B] / p_B``, the first-order
    change of ``ΔF`` per frame (delta method), from :func:`.blocking.block_standard_error`.

    Args:
        in_a: boolean mask ``[T]`` of frames in region A, in time order.
        in_b: boolean mask ``[T]`` of frames in region B.

    Raises:
        ValueError: if a region holds no frame.
    """
    from .blocking import BLOCK, block_standard_error

    in_a, in_b = in_a.flatten().bool(), in_b.flatten().bool()
    if in_a.shape != in_b.shape:
        raise ValueError("in_a and in_b must have the same length")
    for name, mask in (("A", in_a), ("B", in_b)):
        if not mask.any():
            raise ValueError(f"region {name} holds no frame")
    p_a, p_b = in_a.double().mean(), in_b.double().mean()
    g = in_a.double() / p_a - in_b.double() / p_b
    value = float(torch.log(p_a) - torch.log(p_b))
    try:
        stderr = block_standard_error(g).stderr
    except ValueError:  # too few frames to block
        stderr = math.inf
    return FreeEnergyDifference(value, stderr, BLOCK)


def free_energy_difference_quadrature(
    energy: Energy,
    bounds: tuple[tuple[float, float], ...],
    in_a: Callable[[Tensor], Tensor],
    in_b: Callable[[Tensor], Tensor],
    *,
    n_grid: int = 801,
) -> float:
    """Exact ``ΔF = F_B - F_A`` of a 2-D energy by quadrature on a ``n_grid²`` grid (float64).

    ``in_a`` / ``in_b`` map grid points ``[M, 2]`` to boolean masks ``[M]``.
    """
    if len(bounds) != 2:
        raise ValueError("quadrature is implemented for 2-D targets only")
    axes = [torch.linspace(lo, hi, n_grid, dtype=torch.float64) for lo, hi in bounds]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 2)
    energy = copy.deepcopy(energy).to(torch.float64)
    with torch.no_grad():
        log_p = -energy.energy(grid)
    return float(_delta_f(log_p, in_a(grid), in_b(grid)))
