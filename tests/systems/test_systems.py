"""Toy and particle systems: registry, reference samplers and their distributions."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad

from boltzflow import systems
from boltzflow.energies import LennardJones, MultiDoubleWell
from boltzflow.errors import BoltzflowError
from boltzflow.systems.mcmc import (
    hmc,
    lattice_configurations,
    random_rotations,
    sample_particle_system,
)

torch.set_num_threads(1)

F64 = torch.float64
TOY_IDS = ["double-well", "mueller-brown", "many-well-32", "gmm-40", "dw4", "lj13", "lj55"]
#: lj55's sampler takes a minute; it is the same code as lj13's, so tests do not run it.
SAMPLED_IDS = [i for i in TOY_IDS if i != "lj55"]


def test_registry_lists_toys_and_rejects_unknown_ids() -> None:
    known = systems.available()
    assert all(i in known and known[i] for i in TOY_IDS)
    with pytest.raises(BoltzflowError) as info:
        systems.get("no-such-system")
    assert "no-such-system" in str(info.value)
    assert all(i in str(info.value) for i in TOY_IDS)


@pytest.mark.parametrize("system_id", TOY_IDS)
def test_system_metadata(system_id: str) -> None:
    system = systems.get(system_id)
    assert system.id == system_id
    assert system.temperature is None  # defined directly in kT
    assert system.description and system.reference
    assert system.reference_sampler is not None
    assert systems.get(system_id) is not system  # a fresh system each time
    if system.is_particle_system:
        assert system.event_shape == (system.n_particles, system.spatial_dim)
    if system.event_shape == (2,):
        assert system.bounds is not None and len(system.bounds) == 2
        assert all(lo < hi for lo, hi in system.bounds)


@pytest.mark.parametrize("system_id", SAMPLED_IDS)
def test_reference_sampler_shape_dtype_and_seed(system_id: str) -> None:
    system = systems.get(system_id)
    x = system.sample_reference(4, seed=1)
    assert x.shape == (4, *system.event_shape)
    assert x.dtype == torch.float32
    assert torch.isfinite(x).all()
    assert torch.equal(x, system.sample_reference(4, seed=1))
    if system.is_particle_system:
        assert x.mean(dim=1).abs().max() < 1e-5
    else:  # (MCMC burn-in makes a third particle-system run too slow for a unit test)
        assert not torch.equal(x, system.sample_reference(4, seed=2))


def test_double_well_samples_match_quadrature() -> None:
    system = systems.get("double-well")
    x = system.sample_reference(200_000, seed=0).double()
    energy = system.energy

    def p(t: float) -> float:
        return math.exp(-energy.energy_x1(torch.tensor(t, dtype=F64)).item())

    z = quad(p, -6, 6)[0]
    barrier = 0.031265  # the local maximum of the x1 polynomial
    left = quad(p, -6, barrier)[0] / z
    assert (x[:, 0] < barrier).double().mean().item() == pytest.approx(left, abs=0.01)
    # The whole histogram of x1, bin by bin (standard error per bin ≤ 0.0011).
    edges = np.linspace(-2.5, 2.5, 26)
    hist = np.histogram(x[:, 0].numpy(), bins=edges)[0] / len(x)
    expected = np.array([quad(p, a, b)[0] / z for a, b in itertools.pairwise(edges)])
    assert np.abs(hist - expected).max() < 0.005
    assert x[:, 1].var().item() == pytest.approx(1.0, abs=0.02)


def test_many_well_samples_populate_wells_like_quadrature() -> None:
    system = systems.get("many-well-32")
    x = system.sample_reference(20_000, seed=0).double()
    energy = system.energy

    def p(t: float) -> float:
        return math.exp(-energy.energy_x1(torch.tensor(t, dtype=F64)).item())

    barrier = -0.041691
    left = quad(p, -6, barrier)[0] / quad(p, -6, 6)[0]  # 0.1557
    frac = (x[:, 0::2] < barrier).double().mean(0)  # per copy, standard error 0.0026
    assert (frac - left).abs().max().item() < 0.012
    assert x[:, 1::2].var().item() == pytest.approx(1.0, abs=0.01)
    assert abs(torch.corrcoef(x[:, :2].T)[0, 1].item()) < 0.03  # copies are independent


def test_gmm_samples_have_the_mixture_moments() -> None:
    system = systems.get("gmm-40")
    n = 200_000
    x = system.sample_reference(n, seed=0).double()
    means = system.energy.means.double()
    mean = means.mean(0)
    cov = torch.cov(means.T, correction=0) + system.energy.scale**2 * torch.eye(2, dtype=F64)
    se = (torch.diagonal(cov) / n).sqrt()
    assert ((x.mean(0) - mean).abs() / se).max() < 4
    torch.testing.assert_close(torch.cov(x.T), cov, rtol=0.02, atol=0.5)
    # Each sample lies near the mean it was drawn from: 99.9 % within 5σ of some mean.
    dist = torch.cdist(x[:5000], means).min(dim=1).values
    assert (dist < 5 * system.energy.scale).double().mean() > 0.999


def test_mueller_brown_grid_samples_match_quadrature() -> None:
    system = systems.get("mueller-brown")
    n = 100_000
    x = system.sample_reference(n, seed=0).double()
    (x_lo, x_hi), (y_lo, y_hi) = system.bounds
    assert (x[:, 0] > x_lo).all() and (x[:, 0] < x_hi).all()
    # Independent quadrature on a coarser, shifted grid: mean and basin population.
    m = 700
    cx = x_lo + (x_hi - x_lo) * (torch.arange(m, dtype=F64) + 0.5) / m
    cy = y_lo + (y_hi - y_lo) * (torch.arange(m, dtype=F64) + 0.5) / m
    grid = torch.cartesian_prod(cx, cy)
    w = torch.exp(-system.energy.energy(grid))
    w = w / w.sum()
    q_mean = (w[:, None] * grid).sum(0)
    se = (((w[:, None] * (grid - q_mean) ** 2).sum(0)) / n).sqrt()
    assert ((x.mean(0) - q_mean).abs() / se).max() < 4
    upper_left = (grid[:, 1] > 0.75).double()  # the deepest minimum's basin
    assert (x[:, 1] > 0.75).double().mean().item() == pytest.approx(
        (w * upper_left).sum().item(), abs=0.006
    )


def _radial_check(energy: LennardJones | MultiDoubleWell, r: torch.Tensor, cut: float) -> None:
    """Pair distance of a 2-particle system against 1-D quadrature of ``r^(d-1) exp(-u(r))``."""
    dim = energy.spatial_dim
    k = getattr(energy, "oscillator_scale", 0.0)

    def density(t: float) -> float:
        x = torch.tensor([[[0.0] * dim, [t] + [0.0] * (dim - 1)]], dtype=F64)
        return t ** (dim - 1) * math.exp(-energy.energy(x).item()) if t > 0 else 0.0

    lo, hi = (0.5, 12.0) if k else (0.0, 10.0)
    z = quad(density, lo, hi, limit=200)[0]
    mean = quad(lambda t: t * density(t), lo, hi, limit=200)[0] / z
    below = quad(density, lo, cut, limit=200)[0] / z
    assert r.mean().item() == pytest.approx(mean, abs=4 * r.std().item() / math.sqrt(len(r)) + 2e-3)
    assert (r < cut).double().mean().item() == pytest.approx(below, abs=0.015)


def test_mcmc_is_exact_for_a_pair_of_double_well_particles() -> None:
    energy = MultiDoubleWell(2, 2)
    gen = torch.Generator().manual_seed(0)
    x = sample_particle_system(
        energy,
        4000,
        gen,
        spacing=2.5,
        jitter=0.3,
        max_chains=1000,
        burn_in=300,
        thin=10,
        n_leapfrog=10,
        step_size=0.1,
    ).double()
    _radial_check(energy, (x[:, 0] - x[:, 1]).norm(dim=-1), cut=4.0)


def test_mcmc_is_exact_for_a_pair_of_lennard_jones_particles() -> None:
    energy = LennardJones(2, 3)
    gen = torch.Generator().manual_seed(0)
    x = sample_particle_system(
        energy,
        4000,
        gen,
        spacing=1.1,
        jitter=0.05,
        max_chains=1000,
        burn_in=300,
        thin=10,
        n_leapfrog=10,
        step_size=0.02,
    ).double()
    _radial_check(energy, (x[:, 0] - x[:, 1]).norm(dim=-1), cut=1.1)


def _long_run_mean_energy(
    energy,
    spacing: float,
    n_leapfrog: int,
    n_chains: int,
    burn_in: int,
    thin: int,
    step_size: float,
) -> tuple[float, float]:
    """Mean energy and its standard error from an independent, longer HMC run."""
    gen = torch.Generator().manual_seed(12345)
    x0 = lattice_configurations(
        n_chains,
        *energy.event_shape,
        spacing=spacing,
        jitter=0.1,
        generator=gen,
        dtype=torch.float32,
    )
    result = hmc(
        energy,
        x0,
        n_per_chain=10,
        burn_in=burn_in,
        thin=thin,
        generator=gen,
        n_leapfrog=n_leapfrog,
        step_size=step_size,
        mean_free=True,
    )
    u = energy.energy(result.x).double()
    chain_means = u.reshape(10, n_chains).mean(0)  # chains are independent
    return u.mean().item(), chain_means.std().item() / math.sqrt(n_chains)


def test_dw4_reference_mean_energy_matches_a_long_mala_run() -> None:
    system = systems.get("dw4")
    x = system.sample_reference(500, seed=0)  # 500 chains, one draw each
    u = system.energy.energy(x).double()
    # MALA (one leapfrog step), started from the other well of the pair potential.
    ref, ref_se = _long_run_mean_energy(
        system.energy, spacing=5.5, n_leapfrog=1, n_chains=300, burn_in=1500, thin=40, step_size=0.1
    )
    se = math.hypot(u.std().item() / math.sqrt(len(u)), ref_se)
    assert abs(u.mean().item() - ref) < 4 * se + 0.02, (u.mean().item(), ref, se)
    assert x.mean(dim=1).abs().max() < 1e-5


def test_lj13_reference_mean_energy_matches_a_long_run() -> None:
    system = systems.get("lj13")
    x = system.sample_reference(200, seed=0)  # 200 chains, one draw each
    u = system.energy.energy(x).double()
    ref, ref_se = _long_run_mean_energy(
        system.energy, spacing=1.3, n_leapfrog=5, n_chains=100, burn_in=400, thin=25, step_size=0.02
    )
    se = math.hypot(u.std().item() / math.sqrt(len(u)), ref_se)
    assert abs(u.mean().item() - ref) < 4 * se + 0.05, (u.mean().item(), ref, se)
    assert x.mean(dim=1).abs().max() < 1e-5
    # The EFM LJ13 data set has a mean-free coordinate standard deviation of 0.68.
    assert x.std().item() == pytest.approx(0.68, abs=0.02)


def test_random_rotations_are_proper_rotations() -> None:
    gen = torch.Generator().manual_seed(0)
    for dim in (2, 3):
        rot = random_rotations(50, dim, gen, F64)
        eye = torch.eye(dim, dtype=F64).expand(50, dim, dim)
        torch.testing.assert_close(rot @ rot.transpose(-1, -2), eye)
        torch.testing.assert_close(torch.linalg.det(rot), torch.ones(50, dtype=F64))


def test_lattice_configurations_do_not_overlap() -> None:
    gen = torch.Generator().manual_seed(0)
    x = lattice_configurations(20, 55, 3, spacing=1.1, jitter=0.05, generator=gen)
    d = torch.cdist(x, x) + torch.eye(55) * 10
    assert d.min() > 0.8
    assert x.mean(dim=1).abs().max() < 1e-10


def test_hmc_rejects_bad_arguments() -> None:
    energy = MultiDoubleWell()
    x0 = torch.zeros(2, 4, 2)
    with pytest.raises(ValueError, match="thin"):
        hmc(energy, x0, n_per_chain=1, burn_in=0, thin=0, generator=torch.Generator())
