"""Built-in toy and particle targets, registered by id; all are defined directly in kT.

These targets have no physical temperature: their energies are already reduced (``u`` in kT),
so every :class:`System` here has ``temperature=None``. Reference samplers are exact where the
target allows it (double-well, many-well-32, gmm-40), grid-exact for mueller-brown, and a batched
HMC (:mod:`boltzflow.systems.mcmc`) for the particle systems dw4, lj13 and lj55. The table with
formulas, parameters and sources is ``docs/systems.md``.
"""

from __future__ import annotations

import math
from functools import partial

import torch
from torch import Tensor

from ..energies.particles import LennardJones, MultiDoubleWell
from ..energies.toy import DoubleWell, GaussianMixture, ManyWell, MuellerBrown
from .base import System
from .exact import sample_grid_2d, sample_inverse_cdf_1d, sample_isotropic_mixture
from .mcmc import sample_particle_system
from .registry import register

_F64 = torch.float64


@register("double-well", "2-D double well in kT: wells at x1 ≈ ±1.4, ΔF ≈ 0.7 kT, barrier ≈ 4.4 kT")
def double_well() -> System:
    energy = DoubleWell()

    def sampler(n: int, generator: torch.Generator) -> Tensor:
        x1 = sample_inverse_cdf_1d(energy.energy_x1, n, generator, low=-3.5, high=3.5)
        x2 = torch.randn(n, generator=generator, dtype=_F64) / math.sqrt(energy.d)
        return torch.stack([x1, x2], dim=-1).to(torch.float32)

    return System(
        id="double-well",
        energy=energy,
        description="2-D double well u = a·x1 + b·x1² + c·x1⁴ + ½·d·x2² (a=0.25, b=-4, c=1, d=1)",
        bounds=((-3.0, 3.0), (-5.0, 5.0)),
        reference_sampler=sampler,
        reference="Noé, Olsson, Köhler, Wu, Science 365, eaaw1147 (2019)",
        in_region_b=_right_well,
        region_labels=("x1 < 0", "x1 > 0"),
    )


def _right_well(x: Tensor) -> Tensor:
    """Region B of double-well: the right (higher) well ``x1 > 0``."""
    return x[:, 0] > 0


#: Box holding all but ~2e-7 of the mass of Müller–Brown at beta = 1/20.
MUELLER_BROWN_BOUNDS = ((-3.0, 1.5), (-1.5, 3.0))


@register("mueller-brown", "Müller–Brown potential reduced as u = V/20; three minima")
def mueller_brown() -> System:
    energy = MuellerBrown()

    def sampler(n: int, generator: torch.Generator) -> Tensor:
        x = sample_grid_2d(
            lambda c: energy.energy(c.to(_F64)), n, generator, bounds=MUELLER_BROWN_BOUNDS
        )
        return x.to(torch.float32)

    return System(
        id="mueller-brown",
        energy=energy,
        description="Müller–Brown potential V reduced as u = V/20 (beta = 1/20)",
        bounds=MUELLER_BROWN_BOUNDS,
        reference_sampler=sampler,
        reference="Müller, Brown, Theor. Chim. Acta 53, 75 (1979)",
    )


@register("many-well-32", "FAB's 32-D many-well: 16 independent 2-D double wells, 2^16 modes")
def many_well_32() -> System:
    energy = ManyWell(32)

    def sampler(n: int, generator: torch.Generator) -> Tensor:
        k = energy.n_wells
        x = torch.empty(n, 2 * k, dtype=_F64)
        x1 = sample_inverse_cdf_1d(energy.energy_x1, n * k, generator, low=-4.0, high=4.0)
        x[:, 0::2] = x1.reshape(n, k)
        x[:, 1::2] = torch.randn(n, k, generator=generator, dtype=_F64)
        return x.to(torch.float32)

    return System(
        id="many-well-32",
        energy=energy,
        description="16 copies of u = x1⁴ - 6·x1² - 0.5·x1 + ½·x2² on pairs (x[2k], x[2k+1])",
        reference_sampler=sampler,
        reference="Midgley et al., Flow annealed importance sampling bootstrap, ICLR 2023",
    )


def fab_gmm_means() -> Tensor:
    """FAB's 40 GMM means ``[40, 2]``: ``(rand(40, 2) - 0.5) · 2 · 40`` from seed 0 (float32)."""
    gen = torch.Generator().manual_seed(0)
    return (torch.rand(40, 2, generator=gen) - 0.5) * 2 * 40


#: FAB's component standard deviation ``softplus(1.0)`` (its ``log_var_scaling = 1``).
FAB_GMM_SCALE = math.log1p(math.e)


@register("gmm-40", "FAB's 2-D mixture of 40 equal-weight Gaussians, means in [-40, 40]²")
def gmm_40() -> System:
    energy = GaussianMixture(fab_gmm_means(), FAB_GMM_SCALE)

    def sampler(n: int, generator: torch.Generator) -> Tensor:
        x = sample_isotropic_mixture(
            energy.means.to(_F64), energy.scale, energy.log_weights.to(_F64), n, generator
        )
        return x.to(torch.float32)

    return System(
        id="gmm-40",
        energy=energy,
        description="u = -log p, p = mixture of 40 N(μ_k, σ²I), σ = softplus(1) ≈ 1.313",
        bounds=((-50.0, 50.0), (-50.0, 50.0)),
        reference_sampler=sampler,
        reference="Midgley et al., Flow annealed importance sampling bootstrap, ICLR 2023",
    )


@register("dw4", "4 particles in 2-D with a pairwise double well (EFM parameters)")
def dw4() -> System:
    energy = MultiDoubleWell(4, 2, a=0.0, b=-4.0, c=0.9, d0=4.0, tau=1.0)
    sampler = partial(
        sample_particle_system,
        energy,
        spacing=2.5,
        jitter=0.3,
        max_chains=1000,
        burn_in=300,
        thin=10,
        n_leapfrog=10,
        step_size=0.1,
    )
    return System(
        id="dw4",
        energy=energy,
        description="DW4: Σ_{i<j} 0.9(d-4)⁴ - 4(d-4)², 4 particles in 2-D",
        n_particles=4,
        spatial_dim=2,
        reference_sampler=sampler,
        reference="Köhler, Klein, Noé, ICML 2020; Klein, Krämer, Noé, NeurIPS 2023",
    )


def _lennard_jones(system_id: str, n_particles: int, **sampler_options: float) -> System:
    energy = LennardJones(n_particles, 3, epsilon=1.0, r_m=1.0, tau=1.0, oscillator_scale=1.0)
    return System(
        id=system_id,
        energy=energy,
        description=(
            f"LJ{n_particles}: Σ_{{i≠j}} [(1/d)¹² - 2(1/d)⁶] + ½ Σ|x_i - x̄|², "
            f"{n_particles} particles in 3-D"
        ),
        n_particles=n_particles,
        spatial_dim=3,
        reference_sampler=partial(sample_particle_system, energy, **sampler_options),
        reference="Köhler, Klein, Noé, ICML 2020; Klein, Krämer, Noé, NeurIPS 2023",
    )


@register("lj13", "13 Lennard-Jones particles in 3-D with a harmonic restraint (EFM)")
def lj13() -> System:
    return _lennard_jones(
        "lj13",
        13,
        spacing=1.1,
        jitter=0.05,
        max_chains=500,
        burn_in=300,
        thin=15,
        n_leapfrog=10,
        step_size=0.02,
    )


@register("lj55", "55 Lennard-Jones particles in 3-D with a harmonic restraint (EFM)")
def lj55() -> System:
    return _lennard_jones(
        "lj55",
        55,
        spacing=1.1,
        jitter=0.05,
        max_chains=250,
        burn_in=200,
        thin=10,
        n_leapfrog=10,
        step_size=0.015,
    )
