"""Particle-system energies invariant under translation, rotation and permutation: DW4 and LJ."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Energy


def squared_pair_distances(x: Tensor, pairs: Tensor) -> Tensor:
    """Squared distances ``[B, n_pairs]`` of the particle pairs ``pairs: [2, n_pairs]``.

    Args:
        x: positions ``[B, n_particles, spatial_dim]``.
        pairs: particle indices ``(i, j)``, e.g. ``torch.triu_indices(n, n, 1)``.
    """
    diff = x[:, pairs[0]] - x[:, pairs[1]]
    return diff.pow(2).sum(-1)


def remove_mean(x: Tensor) -> Tensor:
    """``x - x̄``: positions ``[B, n_particles, spatial_dim]`` with their centroid removed."""
    return x - x.mean(dim=1, keepdim=True)


class _PairEnergy(Energy):
    """Base for energies of ``n_particles`` points in ``spatial_dim`` with a pair list buffer."""

    def __init__(self, n_particles: int, spatial_dim: int):
        if n_particles < 2 or spatial_dim < 1:
            raise ValueError(
                f"need n_particles >= 2 and spatial_dim >= 1, got {n_particles}, {spatial_dim}"
            )
        super().__init__((n_particles, spatial_dim))
        self.n_particles = int(n_particles)
        self.spatial_dim = int(spatial_dim)
        self.register_buffer(
            "pairs", torch.triu_indices(n_particles, n_particles, offset=1), persistent=False
        )

    @property
    def n_pairs(self) -> int:
        return self.pairs.shape[1]


class MultiDoubleWell(_PairEnergy):
    """Particles with a double-well pair potential (DW4 with the defaults).

    ``u(x) = (1/τ) Σ_{i<j} [a(dᵢⱼ - d₀) + b(dᵢⱼ - d₀)² + c(dᵢⱼ - d₀)⁴]`` on
    ``x: [B, n_particles, spatial_dim]``, ``dᵢⱼ = |xᵢ - xⱼ|``. Papers write the prefactor as
    ``1/(2τ)`` with the sum over all ordered pairs ``i ≠ j``; this is the same energy, and it is
    what bgflow's ``MultiDoubleWellPotential(a=0.9, b=-4, c=0, offset=4)`` computes for the DW4
    data sets (bgflow names the quartic coefficient ``a``). Each pair has minima at
    ``d = d₀ ± sqrt(-b / 2c) ≈ 2.51, 5.49`` with value ``-b² / 4c ≈ -4.44`` (defaults).

    Args:
        n_particles: number of particles.
        spatial_dim: dimension of space.
        a, b, c: linear, quadratic and quartic coefficients in ``d - d₀``.
        d0: centre of the double well in distance.
        tau: temperature dividing the energy.

    Reference:
        Köhler, Klein, Noé, "Equivariant flows: exact likelihood generative learning for
        symmetric densities", ICML 2020; Klein, Krämer, Noé, "Equivariant flow matching",
        NeurIPS 2023.
    """

    def __init__(
        self,
        n_particles: int = 4,
        spatial_dim: int = 2,
        *,
        a: float = 0.0,
        b: float = -4.0,
        c: float = 0.9,
        d0: float = 4.0,
        tau: float = 1.0,
    ):
        super().__init__(n_particles, spatial_dim)
        self.a, self.b, self.c, self.d0, self.tau = map(float, (a, b, c, d0, tau))

    def pair_energy(self, d: Tensor) -> Tensor:
        """Reduced energy of one pair at distance ``d``, elementwise."""
        s = d - self.d0
        s2 = s * s
        return (self.a * s + self.b * s2 + self.c * s2 * s2) / self.tau

    def _energy(self, x: Tensor) -> Tensor:
        # The floor keeps the gradient finite for coinciding particles (sqrt'(0) = inf).
        d = squared_pair_distances(x, self.pairs).clamp_min(1e-12).sqrt()
        return self.pair_energy(d).sum(-1)


class LennardJones(_PairEnergy):
    """Lennard-Jones cluster held together by a harmonic restraint to its centroid (LJ13, LJ55).

    ``u(x) = (ε/τ) Σ_{i≠j} [(r_m/dᵢⱼ)¹² - 2(r_m/dᵢⱼ)⁶] + (k/2) Σᵢ |xᵢ - x̄|²`` on
    ``x: [B, n_particles, spatial_dim]``. The Lennard-Jones sum runs over **ordered** pairs, so
    each pair counts twice: a lone pair at ``d = r_m`` contributes ``-2ε/τ``. This is the energy
    of the equivariant-flow-matching (EFM) LJ13/LJ55 data sets, which the later literature
    benchmarks against (DEM/iDEM use it as ``energy_factor=1``; the mean-free coordinate
    standard deviation 0.68 of the EFM LJ13 data is reproduced by this energy, not by half of it).
    bgflow's ``LennardJonesPotential`` divides the ordered sum by two (``epsilon=0.5`` here), as
    do E-ACF's LJ13 experiments. The restraint is bgflow's ``½ Σᵢ |xᵢ - x̄|²`` times
    ``oscillator_scale = k = 1``.

    Args:
        n_particles: number of particles (13 for LJ13, 55 for LJ55).
        spatial_dim: dimension of space.
        epsilon: well depth ``ε`` of one ordered-pair term.
        r_m: distance ``r_m`` of the pair minimum (``= 2^{1/6} σ``).
        tau: temperature dividing the Lennard-Jones term.
        oscillator_scale: force constant ``k`` of the restraint to the centroid (0 disables it).

    Reference:
        Köhler, Klein, Noé, "Equivariant flows", ICML 2020; Klein, Krämer, Noé, "Equivariant
        flow matching", NeurIPS 2023 (data sets); Akhound-Sadegh et al., "Iterated denoising
        energy matching", ICML 2024 (``LennardJonesPotential`` with ``energy_factor``).
    """

    def __init__(
        self,
        n_particles: int = 13,
        spatial_dim: int = 3,
        *,
        epsilon: float = 1.0,
        r_m: float = 1.0,
        tau: float = 1.0,
        oscillator_scale: float = 1.0,
    ):
        super().__init__(n_particles, spatial_dim)
        self.epsilon, self.r_m, self.tau = float(epsilon), float(r_m), float(tau)
        self.oscillator_scale = float(oscillator_scale)

    def pair_energy(self, d: Tensor) -> Tensor:
        """Reduced Lennard-Jones energy of one unordered pair at distance ``d`` (both ordered
        terms, minimum ``-2ε/τ`` at ``d = r_m``), elementwise."""
        return self._pair_energy_sq(d * d)

    def _pair_energy_sq(self, d2: Tensor) -> Tensor:
        p6 = (self.r_m**2 / d2).pow(3)
        return (2.0 * self.epsilon / self.tau) * (p6 * p6 - 2.0 * p6)

    def _energy(self, x: Tensor) -> Tensor:
        u = self._pair_energy_sq(squared_pair_distances(x, self.pairs)).sum(-1)
        if self.oscillator_scale:
            u = u + 0.5 * self.oscillator_scale * remove_mean(x).pow(2).sum((1, 2))
        return u
