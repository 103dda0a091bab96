"""Batched Hamiltonian Monte Carlo / MALA reference sampler for particle systems."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..energies.base import Energy


@dataclass(frozen=True)
class MCMCResult:
    """Output of :func:`hmc`.

    Attributes:
        x: samples ``[n_chains * n_per_chain, *event_shape]``, draw-major (the first
            ``n_chains`` rows are the first draw of every chain).
        step_size: the leapfrog step size ``ε`` used after burn-in.
        acceptance: mean Metropolis acceptance probability after burn-in.
    """

    x: Tensor
    step_size: float
    acceptance: float


def _energy_and_grad(energy: Energy, x: Tensor) -> tuple[Tensor, Tensor]:
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        u = energy.energy(x)
        (grad,) = torch.autograd.grad(u.sum(), x)
    return u.detach(), grad


def _noise(x: Tensor, generator: torch.Generator, mean_free: bool) -> Tensor:
    xi = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return xi - xi.mean(dim=1, keepdim=True) if mean_free else xi


def hmc(
    energy: Energy,
    x0: Tensor,
    *,
    n_per_chain: int,
    burn_in: int,
    thin: int,
    generator: torch.Generator,
    n_leapfrog: int = 1,
    step_size: float = 1e-2,
    target_accept: float = 0.65,
    adapt_rate: float = 0.05,
    mean_free: bool = False,
) -> MCMCResult:
    """Run ``len(x0)`` Hamiltonian Monte Carlo chains in parallel on ``exp(-u)``.

    Each step draws a momentum ``p ~ N(0, I)``, integrates ``n_leapfrog`` leapfrog steps of size
    ``ε`` and accepts with probability ``min(1, exp(H(x, p) - H(y, p')))``,
    ``H = u + ½|p|²``. With ``n_leapfrog = 1`` this is exactly the Metropolis-adjusted Langevin
    algorithm (MALA) with step ``h = ε²/2``. During ``burn_in`` steps one step size shared by all
    chains is adapted (Robbins–Monro on ``log ε``, driven by the mean acceptance probability)
    towards ``target_accept``; then it is frozen, so the draws come from a fixed kernel that
    leaves ``exp(-u)`` invariant. A draw is kept every ``thin`` steps. Proposals with a
    non-finite energy are rejected.

    Args:
        energy: reduced energy ``u``.
        x0: starting points ``[n_chains, *event_shape]``; their dtype is the working dtype.
        n_per_chain: draws kept per chain.
        burn_in: steps before the first draw (step size adapted during them).
        thin: steps between kept draws.
        generator: source of all randomness (reproducible runs).
        n_leapfrog: leapfrog steps per proposal (1: MALA).
        step_size: initial leapfrog step ``ε``.
        target_accept: acceptance probability aimed at during burn-in.
        adapt_rate: Robbins–Monro gain for ``log ε``.
        mean_free: for particle systems ``[B, N, d]`` with a translation-invariant energy: keep
            the chains in the centre-of-mass-free subspace (momenta are projected onto it).

    Returns:
        :class:`MCMCResult` with ``x: [n_chains * n_per_chain, *event_shape]``.

    Reference:
        Neal, "MCMC using Hamiltonian dynamics", Handbook of MCMC (2011); Roberts, Tweedie,
        Bernoulli 2 (1996) for MALA.
    """
    if n_per_chain < 1 or burn_in < 0 or thin < 1 or n_leapfrog < 1:
        raise ValueError("need n_per_chain >= 1, burn_in >= 0, thin >= 1 and n_leapfrog >= 1")
    x = x0.detach().clone()
    if mean_free:
        x = x - x.mean(dim=1, keepdim=True)
    u, grad = _energy_and_grad(energy, x)
    if not torch.isfinite(u).all():
        raise ValueError("the starting configurations have a non-finite energy")
    log_eps = math.log(step_size)
    dims = tuple(range(1, x.dim()))
    draws: list[Tensor] = []
    acc_sum, acc_n = 0.0, 0
    for step in range(burn_in + n_per_chain * thin):
        eps = math.exp(log_eps)
        p = _noise(x, generator, mean_free)
        h0 = u + 0.5 * p.pow(2).sum(dims)
        y, u_y, grad_y = x, u, grad
        p = p - 0.5 * eps * grad_y
        for k in range(n_leapfrog):
            y = y + eps * p
            u_y, grad_y = _energy_and_grad(energy, y)
            p = p - (eps if k < n_leapfrog - 1 else 0.5 * eps) * grad_y
        log_alpha = h0 - u_y - 0.5 * p.pow(2).sum(dims)
        log_alpha = torch.where(torch.isfinite(log_alpha), log_alpha, -math.inf)
        alpha = log_alpha.clamp(max=0.0).exp()
        accept = torch.rand(alpha.shape, generator=generator, dtype=alpha.dtype) < alpha
        mask = accept.view(-1, *([1] * (x.dim() - 1)))
        x = torch.where(mask, y, x)
        grad = torch.where(mask, grad_y, grad)
        u = torch.where(accept, u_y, u)
        if step < burn_in:
            log_eps += adapt_rate * (alpha.mean().item() - target_accept)
        else:
            acc_sum += alpha.mean().item()
            acc_n += 1
            if (step - burn_in + 1) % thin == 0:
                draws.append(x.clone())
    return MCMCResult(torch.cat(draws), math.exp(log_eps), acc_sum / acc_n)


def lattice_configurations(
    n_chains: int,
    n_particles: int,
    spatial_dim: int,
    *,
    spacing: float,
    jitter: float,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Starting points ``[n_chains, n_particles, spatial_dim]`` without overlapping particles.

    The ``n_particles`` points of a simple cubic (square) lattice of ``spacing`` closest to the
    origin, each chain with its own Gaussian jitter of standard deviation ``jitter`` and its own
    random permutation, centred at the origin.
    """
    side = math.ceil(n_particles ** (1 / spatial_dim)) + 2
    axis = torch.arange(side, dtype=dtype) - (side - 1) / 2
    grid = torch.cartesian_prod(*([axis] * spatial_dim)).reshape(-1, spatial_dim)
    order = torch.argsort(grid.pow(2).sum(-1), stable=True)
    sites = grid[order[:n_particles]] * spacing
    perm = torch.argsort(torch.rand(n_chains, n_particles, generator=generator), dim=1)
    x = sites[perm] + jitter * torch.randn(
        n_chains, n_particles, spatial_dim, generator=generator, dtype=dtype
    )
    return x - x.mean(dim=1, keepdim=True)


def random_rotations(n: int, dim: int, generator: torch.Generator, dtype: torch.dtype) -> Tensor:
    """``n`` Haar-random rotation matrices ``[n, dim, dim]`` (determinant +1)."""
    a = torch.randn(n, dim, dim, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
    flip = torch.linalg.det(q) < 0
    q[flip, :, 0] = -q[flip, :, 0]
    return q.to(dtype)


def sample_particle_system(
    energy: Energy,
    n: int,
    generator: torch.Generator,
    *,
    spacing: float,
    jitter: float,
    max_chains: int,
    burn_in: int,
    thin: int,
    n_leapfrog: int,
    step_size: float,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """``n`` mean-free reference samples ``[n, n_particles, spatial_dim]`` (float32).

    Runs ``min(n, max_chains)`` mean-free HMC chains (:func:`hmc`) from
    :func:`lattice_configurations`, then applies to every draw an independent Haar-random
    rotation and random permutation of the particles. Both leave the target invariant, so the
    result is still a sample of it, and they remove the slow rotational and permutational
    autocorrelation of the chains.

    Args:
        energy: a translation-, rotation- and permutation-invariant particle energy with event
            shape ``(n_particles, spatial_dim)``.
        n: number of samples.
        generator: source of all randomness.
        spacing: lattice spacing of the starting configurations.
        jitter: standard deviation of the jitter of the starting configurations.
        max_chains: most parallel chains.
        burn_in, thin, n_leapfrog, step_size: see :func:`hmc`.
        dtype: working dtype of the chains.
    """
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    n_particles, spatial_dim = energy.event_shape
    n_chains = min(n, max_chains)
    x0 = lattice_configurations(
        n_chains,
        n_particles,
        spatial_dim,
        spacing=spacing,
        jitter=jitter,
        generator=generator,
        dtype=dtype,
    )
    result = hmc(
        energy,
        x0,
        n_per_chain=math.ceil(n / n_chains),
        burn_in=burn_in,
        thin=thin,
        generator=generator,
        n_leapfrog=n_leapfrog,
        step_size=step_size,
        mean_free=True,
    )
    x = result.x[:n]
    rot = random_rotations(n, spatial_dim, generator, x.dtype)
    perm = torch.argsort(torch.rand(n, n_particles, generator=generator), dim=1)
    x = torch.gather(x, 1, perm.unsqueeze(-1).expand_as(x)) @ rot.transpose(-1, -2)
    return (x - x.mean(dim=1, keepdim=True)).to(torch.float32)
