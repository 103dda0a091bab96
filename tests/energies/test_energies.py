"""Energies of every registered system: the contract, and numbers that mean something."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad
from scipy.optimize import minimize

from boltzflow import systems, testing
from boltzflow.energies import (
    DoubleWell,
    GaussianMixture,
    LennardJones,
    ManyWell,
    MuellerBrown,
    MultiDoubleWell,
)
from boltzflow.systems.mcmc import lattice_configurations, random_rotations
from boltzflow.systems.toys import FAB_GMM_SCALE, fab_gmm_means

torch.set_num_threads(1)

F64 = torch.float64

#: The targets of ``boltzflow.systems.toys`` (molecular systems are tested with their force field).
TOY_IDS = ["double-well", "mueller-brown", "many-well-32", "gmm-40", "dw4", "lj13", "lj55"]


def _configurations(system: systems.System, n: int = 4) -> torch.Tensor:
    """A few reference-like float64 configurations, without running any MCMC."""
    gen = torch.Generator().manual_seed(3)
    if system.is_particle_system:
        spacing = 2.5 if isinstance(system.energy, MultiDoubleWell) else 1.1
        return lattice_configurations(
            n,
            system.n_particles,
            system.spatial_dim,
            spacing=spacing,
            jitter=0.1,
            generator=gen,
            dtype=F64,
        )
    return system.sample_reference(n, seed=3).to(F64)


@pytest.mark.parametrize("system_id", TOY_IDS)
def test_energy_contract(system_id: str) -> None:
    system = systems.get(system_id)
    testing.assert_energy_contract(system.energy, _configurations(system))


@pytest.mark.parametrize("system_id", TOY_IDS)
def test_energy_dtypes_and_batching(system_id: str) -> None:
    system = systems.get(system_id)
    x = _configurations(system, 5)
    u64 = system.energy.energy(x)
    assert u64.dtype == F64
    u32 = system.energy.energy(x.float())
    assert u32.dtype == torch.float32
    torch.testing.assert_close(u32.double(), u64, rtol=1e-5, atol=1e-4)
    one_by_one = torch.cat([system.energy.energy(xi[None]) for xi in x])
    torch.testing.assert_close(one_by_one, u64)


def test_double_well_minima_barrier_and_free_energy() -> None:
    energy = DoubleWell()
    roots = np.sort(np.roots([4.0, 0.0, 2 * -4.0, 0.25]).real)
    x = torch.tensor([[r, 0.0] for r in roots], dtype=F64)
    u = energy.energy(x)
    torch.testing.assert_close(
        x[:, 0], torch.tensor([-1.42959, 0.03127, 1.39832], dtype=F64), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(
        u, torch.tensor([-4.35549, 0.00391, -3.64842], dtype=F64), atol=1e-5, rtol=0
    )
    assert energy.force(x).abs().max() < 1e-10

    # Free energy difference between the wells by quadrature: ≈ 0.7 kT as designed.
    def p(t: float) -> float:
        return math.exp(-energy.energy_x1(torch.tensor(t, dtype=F64)).item())

    z_left, z_right = quad(p, -6, roots[1])[0], quad(p, roots[1], 6)[0]
    assert math.log(z_left / z_right) == pytest.approx(0.6613, abs=1e-3)


def test_many_well_minima_and_fab_normalizer() -> None:
    energy = ManyWell(32)
    assert energy.n_wells == 16
    roots = np.sort(np.roots([4.0, 0.0, -12.0, -0.5]).real)
    x1 = torch.tensor(roots[[0, 2]], dtype=F64)
    torch.testing.assert_close(x1, torch.tensor([-1.71083, 1.75252], dtype=F64), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        energy.energy_x1(x1), torch.tensor([-8.13925, -9.87117], dtype=F64), atol=1e-5, rtol=0
    )
    # The global minimum: every copy in its deeper (right) well.
    x = torch.zeros(1, 32, dtype=F64)
    x[:, 0::2] = x1[1]
    assert energy.energy(x).item() == pytest.approx(16 * -9.87117, abs=1e-4)
    assert energy.force(x).abs().max() < 1e-9
    # FAB's normalizing constant of one x1 factor.
    z = quad(lambda t: math.exp(-energy.energy_x1(torch.tensor(t, dtype=F64)).item()), -6, 6)[0]
    assert z == pytest.approx(11784.50927, rel=1e-7)


@pytest.mark.parametrize(
    ("start", "position", "value"),
    [
        ((-0.5, 1.5), (-0.558, 1.442), -146.70),
        ((0.6, 0.0), (0.623, 0.028), -108.17),
        ((-0.1, 0.5), (-0.050, 0.467), -80.77),
    ],
)
def test_mueller_brown_minima(
    start: tuple[float, float], position: tuple[float, float], value: float
) -> None:
    energy = MuellerBrown()

    def v(p: np.ndarray) -> float:
        return energy.potential(torch.tensor(p, dtype=F64)[None]).item()

    res = minimize(
        v, np.array(start), method="Nelder-Mead", options={"xatol": 1e-8, "fatol": 1e-10}
    )
    assert res.x == pytest.approx(position, abs=2e-3)
    assert res.fun == pytest.approx(value, abs=0.01)
    x = torch.tensor(res.x, dtype=F64)[None]
    assert energy.energy(x).item() == pytest.approx(res.fun / 20)
    assert MuellerBrown(beta=0.5).energy(x).item() == pytest.approx(res.fun / 2)


def test_gmm_is_fab_gmm_and_normalized() -> None:
    system = systems.get("gmm-40")
    energy = system.energy
    assert isinstance(energy, GaussianMixture)
    gen = torch.Generator().manual_seed(0)
    torch.testing.assert_close(energy.means, (torch.rand(40, 2, generator=gen) - 0.5) * 80)
    assert energy.scale == pytest.approx(torch.nn.functional.softplus(torch.tensor(1.0)).item())
    # Same log density as torch.distributions' mixture (an independent implementation).
    ref = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(torch.ones(40, dtype=F64)),
        torch.distributions.Independent(
            torch.distributions.Normal(fab_gmm_means().to(F64), FAB_GMM_SCALE), 1
        ),
    )
    x = (torch.rand(100, 2, generator=gen, dtype=F64) - 0.5) * 90
    torch.testing.assert_close(-energy.energy(x), ref.log_prob(x))
    # exp(-u) integrates to one (midpoint rule, spectrally accurate for σ/h ≈ 5, over the bounds).
    (lo, hi), _ = system.bounds
    h = 0.25
    c = torch.arange(lo + h / 2, hi, h, dtype=F64)
    grid = torch.cartesian_prod(c, c)
    total = sum(torch.exp(-energy.energy(chunk)).sum().item() for chunk in grid.split(250_000))
    assert total * h * h == pytest.approx(1.0, abs=1e-6)


def test_dw4_hand_computed_configuration() -> None:
    energy = MultiDoubleWell()
    # A 3 x 4 rectangle: four sides d ∈ {3, 4} and two diagonals d = 5, so d - d0 ∈ {-1, 0, 1}:
    # each side of 3 and each diagonal gives 0.9 - 4 = -3.1, each side of 4 gives 0.
    x = torch.tensor([[[0.0, 0.0], [3.0, 0.0], [0.0, 4.0], [3.0, 4.0]]], dtype=F64)
    assert energy.energy(x).item() == pytest.approx(4 * -3.1)
    # The pair minimum d0 ± sqrt(-b / 2c) with value -b² / 4c.
    d_min = 4.0 + math.sqrt(4.0 / 1.8)
    assert energy.pair_energy(torch.tensor(d_min)).item() == pytest.approx(-16 / 3.6)
    assert MultiDoubleWell(tau=2.0).energy(x).item() == pytest.approx(2 * -3.1)


def test_lennard_jones_pair_minimum() -> None:
    eps, r_m, tau = 1.5, 1.3, 0.5
    energy = LennardJones(2, 3, epsilon=eps, r_m=r_m, tau=tau, oscillator_scale=0.0)
    d = torch.linspace(0.9, 2.5, 16001, dtype=F64)
    x = torch.zeros(len(d), 2, 3, dtype=F64)
    x[:, 1, 0] = d
    u = energy.energy(x)
    assert d[u.argmin()].item() == pytest.approx(r_m, abs=1e-4)
    # Both ordered terms i≠j: a lone pair at r_m has energy -2ε/τ.
    assert u.min().item() == pytest.approx(-2 * eps / tau, rel=1e-8)
    # The restraint ½k Σ|x_i - x̄|² adds k·r_m²/4 for a pair at distance r_m.
    with_restraint = LennardJones(2, 3, epsilon=eps, r_m=r_m, tau=tau, oscillator_scale=2.0)
    pair = torch.tensor([[[0.0, 0.0, 0.0], [r_m, 0.0, 0.0]]], dtype=F64)
    assert with_restraint.energy(pair).item() == pytest.approx(-2 * eps / tau + 2.0 * r_m**2 / 4)


def test_lennard_jones_lj13_icosahedron_energy() -> None:
    # The LJ13 global minimum (Mackay icosahedron) has E = -44.3268 ε per unordered pair sum.
    phi = (1 + math.sqrt(5)) / 2
    verts = []
    for s1 in (-1, 1):
        for s2 in (-1, 1):
            verts += [(0, s1, s2 * phi), (s1, s2 * phi, 0), (s2 * phi, 0, s1)]
    x = torch.tensor([(0.0, 0.0, 0.0), *verts], dtype=F64)[None]
    bare = LennardJones(13, oscillator_scale=0.0)
    res = minimize(
        lambda p: bare.energy(torch.tensor(p, dtype=F64).reshape(1, 13, 3)).item(),
        (x / x[0, 1].norm()).flatten().numpy(),
        jac=lambda p: -bare.force(torch.tensor(p, dtype=F64).reshape(1, 13, 3)).flatten().numpy(),
        method="BFGS",
        options={"gtol": 1e-9},
    )
    assert res.fun == pytest.approx(2 * -44.326801, abs=1e-5)


@pytest.mark.parametrize("system_id", ["dw4", "lj13", "lj55"])
def test_particle_energy_invariances(system_id: str) -> None:
    system = systems.get(system_id)
    x = _configurations(system, 6)
    u = system.energy.energy(x)
    gen = torch.Generator().manual_seed(1)
    rot = random_rotations(len(x), system.spatial_dim, gen, F64)
    shift = torch.randn(len(x), 1, system.spatial_dim, generator=gen, dtype=F64) * 3
    perm = torch.randperm(system.n_particles, generator=gen)
    moved = (x @ rot.transpose(-1, -2) + shift)[:, perm]
    torch.testing.assert_close(system.energy.energy(moved), u, rtol=1e-10, atol=1e-9)
    reflected = x * torch.tensor([-1.0] + [1.0] * (system.spatial_dim - 1), dtype=F64)
    torch.testing.assert_close(system.energy.energy(reflected), u, rtol=1e-10, atol=1e-9)


def test_particle_energies_reject_bad_shapes() -> None:
    with pytest.raises(ValueError, match="n_particles"):
        LennardJones(1)
    with pytest.raises(ValueError, match="even"):
        ManyWell(3)
    with pytest.raises(ValueError, match="shape"):
        MultiDoubleWell().energy(torch.zeros(2, 8))
