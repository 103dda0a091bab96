"""TorchForceField and OpenMMEnergy against OpenMM's Reference platform (float64 parity)."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from molecules_util import build

from boltzflow import testing
from boltzflow.energies import OpenMMEnergy, TorchForceField
from boltzflow.energies.ff_terms import (
    ONE_4PI_EPS0,
    GBScreening,
    OBCModel,
    PairEnergies,
    PairParameters,
    obc_descreening,
    pair_distances,
)

openmm = pytest.importorskip("openmm")

N_CONFIGS = 50
CASES = [  # (sequence, force field, solvent): every force field x solvent, several residue kinds
    ("ACE-ALA-NME", "amber99sb-ildn", "vacuum"),
    ("ACE-ALA-NME", "amber99sb-ildn", "obc2"),
    ("GP", "amber99sb-ildn", "obc1"),
    ("AK", "amber14", "vacuum"),
    ("KD", "amber14", "obc2"),
    ("WY", "amber14", "obc1"),
    ("KD", "amber14", "obc1-salt"),
    ("ACE-ALA-NME", "amber14", "obc2-custom"),
]


def perturbed(positions: np.ndarray, n: int = N_CONFIGS, scale: float = 0.01) -> np.ndarray:
    """``n`` configurations: ``positions`` plus Gaussian noise of ``scale`` nm (seeded)."""
    rng = np.random.default_rng(0)
    return positions[None] + scale * rng.standard_normal((n, *positions.shape))


def openmm_reference(system, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Energies ``[B]`` (kJ/mol) and forces ``[B, N, 3]`` (kJ/mol/nm) from the Reference platform."""
    context = openmm.Context(
        system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference")
    )
    energies, forces = [], []
    for pos in xs:
        context.setPositions(pos)
        state = context.getState(getEnergy=True, getForces=True)
        energies.append(state.getPotentialEnergy()._value)
        forces.append(state.getForces(asNumpy=True)._value)
    return np.array(energies), np.array(forces)


def relative_force_error(f: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``‖f - ref‖ / ‖ref‖`` per configuration, ``[B]``."""
    flat = (f - ref).reshape(len(f), -1), ref.reshape(len(ref), -1)
    return np.linalg.norm(flat[0], axis=1) / np.linalg.norm(flat[1], axis=1)


@pytest.mark.parametrize(("sequence", "forcefield", "solvent"), CASES)
def test_parity_with_openmm_reference(sequence, forcefield, solvent):
    system, positions, _ = build(sequence, forcefield, solvent)
    xs = perturbed(positions)
    ref_energy, ref_force = openmm_reference(system, xs)
    ff = TorchForceField(system, temperature=300.0)
    u, f = ff.energy_and_force(torch.from_numpy(xs))
    energy_kj = (u * ff.kT).numpy()
    force_kj = (f * ff.kT).numpy()
    assert np.abs(energy_kj - ref_energy).max() < 1e-3
    assert relative_force_error(force_kj, ref_force).max() < 1e-5
    # the per-term split adds up, and energy_kj/energy/force agree with energy_and_force
    x = torch.from_numpy(xs[:4])
    terms = ff.terms(x)
    assert set(terms) >= {"bond", "angle", "torsion", "coulomb", "lj"}
    assert ("gb_polar" in terms) == (solvent != "vacuum")
    torch.testing.assert_close(sum(terms.values()), ff.energy_kj(x))
    torch.testing.assert_close(ff.energy(x), u[:4])
    torch.testing.assert_close(ff.force(x), f[:4])


@pytest.mark.parametrize("solvent", ["vacuum", "obc2"])
def test_float32_close_to_float64(solvent):
    system, positions, _ = build("KD", "amber14", solvent)
    ff = TorchForceField(system, temperature=310.0)
    x = torch.from_numpy(perturbed(positions, n=20))
    u64, f64 = ff.energy_and_force(x)
    u32, f32 = ff.energy_and_force(x.float())
    assert u32.dtype == f32.dtype == torch.float32
    assert (u32.double() - u64).abs().max() < 1e-4 * u64.abs().max() + 1e-3
    assert relative_force_error(f32.double().numpy(), f64.numpy()).max() < 1e-4
    ff32 = copy.deepcopy(ff).to(torch.float32)  # float32 buffers still work
    torch.testing.assert_close(ff32.energy(x.float()), u32, rtol=1e-5, atol=1e-3)


def test_energy_contract_and_chunking():
    system, positions, _ = build("ACE-ALA-NME", "amber99sb-ildn", "obc2")
    ff = TorchForceField(system, temperature=300.0)
    x = torch.from_numpy(perturbed(positions, n=6))
    testing.assert_energy_contract(ff, x[:2])
    assert ff.skipped_forces == ["CMMotionRemover"]
    chunked = TorchForceField(system, temperature=300.0, chunk_size=4)
    torch.testing.assert_close(chunked.energy(x), ff.energy(x))
    torch.testing.assert_close(chunked.force(x), ff.force(x))
    # a graph through the energy gives the same force
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(chunked.energy(xg).sum(), xg)
    torch.testing.assert_close(-grad, ff.force(x))


def test_openmm_energy_agrees_with_torch_forcefield():
    system, positions, _ = build("ACE-ALA-NME", "amber99sb-ildn", "obc2")
    ff = TorchForceField(system, temperature=300.0)
    bridge = OpenMMEnergy(system, temperature=300.0)
    x = torch.from_numpy(perturbed(positions, n=8)).requires_grad_(True)
    u = bridge.energy(x)
    torch.testing.assert_close(u, ff.energy(x.detach()), rtol=0, atol=1e-6)
    (grad,) = torch.autograd.grad(u.sum(), x)
    torch.testing.assert_close(-grad, bridge.force(x.detach()))
    torch.testing.assert_close(-grad, ff.force(x.detach()), rtol=1e-7, atol=1e-6)
    # input dtype is kept
    assert bridge.energy(x.detach().float()).dtype == torch.float32
    testing.assert_energy_contract(bridge, x.detach()[:2])
    assert bridge.n_flagged == 0


def test_openmm_energy_flags_nan_and_overflow():
    system, positions, _ = build("AK", "amber14", "vacuum")
    bridge = OpenMMEnergy(system, temperature=300.0, max_energy=1e6)
    x = torch.from_numpy(perturbed(positions, n=4)).float()
    x[1, 3, 0] = float("nan")
    x[2, 5] = x[2, 4]  # two atoms on top of each other: LJ overflow
    with pytest.warns(RuntimeWarning, match="max_energy"):
        u, f = bridge.energy_and_force(x)
    assert torch.isfinite(u).all() and torch.isfinite(f).all()
    assert u[1] == u[2] == 1e6 and u[0] < 1e6 and u[3] < 1e6
    assert (f[1] == 0).all() and bridge.n_flagged == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warns once per instance
        assert bridge.energy(x)[1] == 1e6
    assert bridge.n_flagged == 4


def test_openmm_energy_rebuilds_context_when_copied():
    system, positions, _ = build("AK", "amber14", "vacuum")
    bridge = OpenMMEnergy(system, temperature=300.0)
    x = torch.from_numpy(perturbed(positions, n=2))
    u = bridge.energy(x)
    clone = copy.deepcopy(bridge)  # as after pickling to another process
    assert clone._context is None
    torch.testing.assert_close(clone.energy(x), u)


def test_torsion_sign_convention_and_bonded_terms():
    """Phases that are not 0 or π pin the sign convention of the dihedral angle."""
    system = openmm.System()
    for _ in range(5):
        system.addParticle(12.0)
    torsions = openmm.PeriodicTorsionForce()
    torsions.addTorsion(0, 1, 2, 3, 1, 0.7, 3.0)
    torsions.addTorsion(1, 2, 3, 4, 3, -1.1, 2.0)
    torsions.addTorsion(4, 0, 2, 1, 2, 2.5, 1.5)  # improper-like
    angles = openmm.HarmonicAngleForce()
    angles.addAngle(0, 1, 2, 1.9, 300.0)
    bonds = openmm.HarmonicBondForce()
    bonds.addBond(3, 4, 0.15, 2e5)
    for force in (torsions, angles, bonds):
        system.addForce(force)
    xs = np.random.default_rng(1).normal(scale=0.2, size=(20, 5, 3))
    ref_energy, ref_force = openmm_reference(system, xs)
    ff = TorchForceField(system, temperature=300.0)
    u, f = ff.energy_and_force(torch.from_numpy(xs))
    np.testing.assert_allclose((u * ff.kT).numpy(), ref_energy, rtol=0, atol=1e-8)
    assert relative_force_error((f * ff.kT).numpy(), ref_force).max() < 1e-8


@pytest.mark.parametrize("kind", ["native", "obc1-custom"])
def test_gb_regimes_overlap_and_inside(kind):
    """Three GB atoms at distances where one lies inside another, overlaps, or is apart."""
    from openmm.app.internal.customgbforces import GBSAOBC1Force

    system = openmm.System()
    gb = openmm.GBSAOBCForce() if kind == "native" else GBSAOBC1Force(SA="ACE")
    for params in ([0.5, 0.1, 0.8], [-0.3, 0.3, 1.2], [0.2, 0.15, 0.9]):  # charge, radius, scale
        system.addParticle(12.0)
        if kind == "native":
            gb.addParticle(*params)
        else:
            gb.addParticle(params)
    if kind != "native":
        gb.finalize()
    system.addForce(gb)
    xs = np.array([[[0, 0, 0], [d, 0, 0], [0.3, 0.2, 0]] for d in (0.01, 0.05, 0.1, 0.2, 0.6)])
    ref_energy, ref_force = openmm_reference(system, xs)
    ff = TorchForceField(system, temperature=300.0)
    u, f = ff.energy_and_force(torch.from_numpy(xs))
    np.testing.assert_allclose((u * ff.kT).numpy(), ref_energy, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose((f * ff.kT).numpy(), ref_force, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("inside_correction", [False, True])
def test_descreening_derivative_matches_autograd(inside_correction):
    gen = torch.Generator().manual_seed(0)
    # distances and radii that visit all regimes: outside, overlap, i inside j, j inside i
    r = torch.rand(64, 300, generator=gen, dtype=torch.float64) * 0.4 + 0.005
    offset_radius = torch.rand(300, generator=gen, dtype=torch.float64) * 0.15 + 0.05
    scaled_radius = torch.rand(300, generator=gen, dtype=torch.float64) * 0.25 + 0.03
    rr = r.clone().requires_grad_(True)
    term, _ = obc_descreening(rr, offset_radius, scaled_radius, inside_correction, grad=False)
    (auto,) = torch.autograd.grad(term.sum(), rr)
    _, analytic = obc_descreening(r, offset_radius, scaled_radius, inside_correction, grad=True)
    torch.testing.assert_close(analytic, auto, rtol=1e-10, atol=1e-10)
    assert (term == 0).any() and (term != 0).any()
    assert (offset_radius < scaled_radius - r).any()  # some atoms i lie inside atoms j


@pytest.mark.parametrize("kappa", [0.0, 1.5])
def test_pair_energies_gradcheck(kappa):
    """The analytic backward of the pair terms (LJ, Coulomb, GB with salt, ACE) vs finite
    differences."""
    gen = torch.Generator().manual_seed(0)
    n = 6
    # atoms on a jittered line: 0.12-0.5 nm apart, so that finite differences are accurate
    x = torch.arange(n, dtype=torch.float64)[None, :, None] * torch.tensor([0.1, 0.05, 0.08])
    x = x + 0.02 * torch.randn(3, n, 3, generator=gen, dtype=torch.float64)
    i, j = torch.triu_indices(n, n, 1)

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=gen, dtype=torch.float64)

    radius = rand(n) * 0.1 + 0.12
    offset_radius = radius - 0.009
    scaled_radius = offset_radius * (rand(n) * 0.2 + 0.7)
    target = torch.cat([i, j])
    charge = rand(n) - 0.5
    model = OBCModel(
        "test", 1.0, 0.8, 4.85, True, GBScreening(ONE_4PI_EPS0, 1.0, 78.5, kappa), 28.39
    )
    params = PairParameters(
        i=i, j=j, charge_prod=rand(len(i)) - 0.5, sigma=rand(len(i)) * 0.05 + 0.05,
        epsilon=rand(len(i)), model=model, charge=charge, gb_charge_prod=charge[i] * charge[j],
        radius=radius,
        offset_radius=offset_radius, target=target,
        target_offset_radius=offset_radius[target],
        source_scaled_radius=scaled_radius[torch.cat([j, i])],
    )  # fmt: skip
    r = pair_distances(x, i, j).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda r: PairEnergies.apply(r, params), (r,))


def test_unsupported_forces_raise():
    system, _, _ = build("AK", "amber14", "vacuum")
    system = copy.deepcopy(system)
    system.addForce(openmm.CustomBondForce("r^2"))
    with pytest.raises(NotImplementedError, match="CustomBondForce"):
        TorchForceField(system, temperature=300.0)
    gb_system, _, _ = build("AK", "amber14", "obc1")
    gb_system = copy.deepcopy(gb_system)
    gb = next(f for f in gb_system.getForces() if isinstance(f, openmm.CustomGBForce))
    expression, kind = gb.getEnergyTermParameters(1)
    gb.setEnergyTermParameters(1, expression.replace("28.3919551", "30.0"), kind)
    with pytest.raises(NotImplementedError, match="unrecognized CustomGBForce"):
        TorchForceField(gb_system, temperature=300.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    system, positions, _ = build("KD", "amber14", "obc2")
    ff = TorchForceField(system, temperature=310.0)
    x = torch.from_numpy(perturbed(positions, n=1000))
    u, f = ff.energy_and_force(x)
    ff_cuda = copy.deepcopy(ff).to("cuda")
    for dtype, tol in ((torch.float64, 1e-9), (torch.float32, 1e-4)):
        u_cuda, f_cuda = ff_cuda.energy_and_force(x.to("cuda", dtype))
        assert u_cuda.device.type == "cuda" and u_cuda.dtype == dtype
        assert (u_cuda.cpu().double() - u).abs().max() < tol * u.abs().max() + 1e-3
        assert relative_force_error(f_cuda.cpu().double().numpy(), f.numpy()).max() < tol * 10


def test_module_import_stays_light():
    import subprocess
    import sys

    code = "import sys, boltzflow.energies; print('openmm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
