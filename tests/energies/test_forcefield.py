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
    GBParameters,
    GBScreening,
    OBCModel,
    dihedrals,
    obc_integral,
)

openmm = pytest.importorskip("openmm")

N_CONFIGS = 50
# (sequence, force field, solvent): capped and uncapped, every force field x solvent, several
# residue kinds; the full sweep over all 20 + 20 dipeptides is bench/parity.py
CASES = [
    ("ACE-ALA-NME", "amber99sb-ildn", "vacuum"),
    ("ACE-ALA-NME", "amber99sb-ildn", "obc2"),
    ("ACE-ASP-NME", "amber99sb-ildn", "obc1"),
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


def test_compile_falls_back_to_eager_once(monkeypatch):
    """Where torch.compile cannot run, one warning and the eager kernel (no compile in tests)."""
    from boltzflow.energies import forcefield

    calls = []

    def broken(xt, params, forces):
        calls.append(xt.shape[-1])
        raise RuntimeError("no C++ compiler\nlong traceback")

    monkeypatch.setattr(forcefield, "_compiled_evaluate", broken)
    system, positions, _ = build("ACE-ALA-NME", "amber99sb-ildn", "obc2")
    eager = TorchForceField(system, temperature=300.0)
    ff = TorchForceField(system, temperature=300.0, compile=True)
    x = torch.from_numpy(perturbed(positions, n=5))
    assert ff.compiled
    message = r"torch.compile failed \(RuntimeError: no C\+\+ compiler\)"
    with pytest.warns(RuntimeWarning, match=message):
        u, f = ff.energy_and_force(x)
    assert calls == [5] and not ff.compiled
    u0, f0 = eager.energy_and_force(x)
    torch.testing.assert_close(u, u0)
    torch.testing.assert_close(f, f0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        torch.testing.assert_close(ff.force(x), f0)  # no second warning, no second try
    assert calls == [5]


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


def _gb_parameters(offset_radius, scaled_radius, inside_correction: bool) -> GBParameters:
    """GBParameters with only what :func:`obc_integral` reads (the rest are placeholders)."""
    model = OBCModel(
        "test", 1.0, 0.8, 4.85, inside_correction, GBScreening(ONE_4PI_EPS0, 1, 78.5), 0
    )
    placeholder = torch.ones(1, 1, dtype=torch.float64)
    return GBParameters(
        model=model,
        scaled_radius=scaled_radius,
        scaled_radius_sq=scaled_radius**2,
        offset_radius=offset_radius,
        inv_offset_radius=1 / offset_radius,
        **dict.fromkeys(
            ("charge_prod", "self_charge", "atom_offset_radius", "atom_inv_offset_radius",
             "atom_radius", "atom_radius_ratio", "ace_prefactor"),
            placeholder,
        ),
    )  # fmt: skip


@pytest.mark.parametrize("inside_correction", [False, True])
def test_obc_integral_and_derivative(inside_correction):
    """The HCT/OBC integral against its textbook form, and its derivative against central
    differences, in every regime: i outside j's reach, overlapping, i inside j, apart."""
    gen = torch.Generator().manual_seed(0)
    offset = torch.rand(300, 1, generator=gen, dtype=torch.float64) * 0.15 + 0.05
    s = torch.rand(300, 1, generator=gen, dtype=torch.float64) * 0.25 + 0.03
    r = torch.rand(300, 64, generator=gen, dtype=torch.float64) * 0.4 + 0.005
    gb = _gb_parameters(offset, s, inside_correction)

    def integral(r: torch.Tensor) -> torch.Tensor:
        return obc_integral(r, 1 / r, None, gb, grad=False)[0]

    # textbook form, with torch.where
    upper, lower = r + s, torch.maximum(offset, (r - s).abs())
    book = 0.5 * (
        1 / lower - 1 / upper + 0.25 * (r - s**2 / r) * (1 / upper**2 - 1 / lower**2)
        + 0.5 * torch.log(lower / upper) / r
    )  # fmt: skip
    inside = offset < s - r
    if inside_correction:
        book = book + torch.where(inside, 1 / offset - 1 / lower, 0.0)
    book = torch.where(r + s < offset, 0.0, book)
    torch.testing.assert_close(integral(r), book, rtol=1e-12, atol=1e-12)
    assert (book == 0).any() and inside.any() and (book > 0).any()

    h = 1e-6
    numeric = (integral(r + h) - integral(r - h)) / (2 * h)
    _, analytic = obc_integral(r, 1 / r, 1 / r**2, gb, grad=True)
    # away from the kinks of the piecewise integral (r = or - s, r = s ± or)
    kinks = torch.stack([offset - s, s + offset, s - offset]).expand(3, *r.shape)
    smooth = ((r - kinks).abs() > 1e-4).all(0)
    torch.testing.assert_close(analytic[smooth], numeric[smooth], rtol=1e-6, atol=1e-6)


def _six_atoms(gb_kind: str, kappa: float = 0.0):
    """A six-atom chain with every kind of term: bonds, angles, torsions (two on one quadruple),
    LJ + Coulomb with an exclusion and a scaled 1-4 pair, and generalized Born with ACE."""
    from openmm.app.internal.customgbforces import GBSAOBC1Force

    system = openmm.System()
    charges = [0.5, -0.3, 0.2, -0.4, 0.1, -0.1]
    for _ in charges:
        system.addParticle(12.0)
    bonds = openmm.HarmonicBondForce()
    for a in range(5):
        bonds.addBond(a, a + 1, 0.15, 2e5)
    angles = openmm.HarmonicAngleForce()
    for a in range(4):
        angles.addAngle(a, a + 1, a + 2, 1.9 + 0.05 * a, 300.0)
    torsions = openmm.PeriodicTorsionForce()
    torsions.addTorsion(0, 1, 2, 3, 1, 0.7, 3.0)
    torsions.addTorsion(0, 1, 2, 3, 3, -1.1, 2.0)
    torsions.addTorsion(2, 3, 4, 5, 2, 2.5, 1.5)
    torsions.addTorsion(5, 3, 4, 2, 2, 3.14159, 4.0)  # improper-like
    nb = openmm.NonbondedForce()
    nb.setNonbondedMethod(openmm.NonbondedForce.NoCutoff)
    for q in charges:
        nb.addParticle(q, 0.3, 0.5)
    nb.createExceptionsFromBonds([(a, a + 1) for a in range(5)], 0.8333, 0.5)
    if gb_kind == "native":
        gb = openmm.GBSAOBCForce()
        for q in charges:
            gb.addParticle(q, 0.15, 0.8)
    else:
        gb = GBSAOBC1Force(SA="ACE", kappa=kappa)
        for q in charges:
            gb.addParticle([q, 0.15, 0.8])
        gb.finalize()
    for force in (bonds, angles, torsions, nb, gb):
        system.addForce(force)
    gen = np.random.default_rng(3)
    zigzag = np.array([[0.13 * a, 0.08 * (a % 2), 0.02 * a * a] for a in range(6)])
    return system, zigzag[None] + 0.01 * gen.standard_normal((4, 6, 3))


@pytest.mark.parametrize(("gb_kind", "kappa"), [("native", 0.0), ("obc1", 0.0), ("obc1", 1.5)])
def test_small_system_parity_and_gradcheck(gb_kind, kappa):
    system, xs = _six_atoms(gb_kind, kappa)
    ref_energy, ref_force = openmm_reference(system, xs)
    ff = TorchForceField(system, temperature=300.0)
    x = torch.from_numpy(xs)
    u, f = ff.energy_and_force(x)
    np.testing.assert_allclose((u * ff.kT).numpy(), ref_energy, rtol=1e-10, atol=1e-8)
    assert relative_force_error((f * ff.kT).numpy(), ref_force).max() < 1e-9
    assert ff.extra_repr().startswith("n_atoms=6") and "torsions=4" in ff.extra_repr()
    assert torch.autograd.gradcheck(ff.energy, (x[:2].clone().requires_grad_(True),))


def test_energy_backpropagates_to_upstream_parameters():
    """Reverse KL needs d u(x(θ)) / dθ: the backward of energy() is the analytic force."""
    system, positions, _ = build("ACE-ALA-NME", "amber99sb-ildn", "obc2")
    ff = TorchForceField(system, temperature=300.0, chunk_size=3)
    gen = torch.Generator().manual_seed(0)
    base = torch.from_numpy(positions)
    noise = torch.randn(8, *base.shape, generator=gen, dtype=torch.float64)

    def loss(theta: torch.Tensor) -> torch.Tensor:
        return ff.energy(base + theta * noise).mean()

    theta = torch.tensor(0.01, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(loss(theta), theta)
    h = 1e-6
    with torch.no_grad():
        numeric = (loss(theta + h) - loss(theta - h)) / (2 * h)
    torch.testing.assert_close(grad, numeric, rtol=1e-6, atol=1e-6)
    # float32 input: gradient in float32, same direction
    x32 = (base + 0.01 * noise).float().requires_grad_(True)
    ff.energy(x32).sum().backward()
    assert x32.grad.dtype == torch.float32
    torch.testing.assert_close(
        -x32.grad.double(), ff.force(x32.detach().double()), rtol=1e-3, atol=1e-2
    )
    with pytest.raises(ValueError, match="chunk_size"):
        TorchForceField(system, temperature=300.0, chunk_size=0)


@pytest.mark.parametrize("solvent", ["vacuum", "obc1", "obc2"])
def test_parity_on_a_user_pdb(tmp_path, solvent):
    """A PDB written by the user (here: a built tetrapeptide) read back with from_pdb."""
    from openmm import app

    from boltzflow import systems

    built = systems.from_sequence("ACE-ALA-LYS-ASP-NME", forcefield="amber14", solvent="vacuum")
    path = tmp_path / "peptide.pdb"
    with open(path, "w") as fh:
        app.PDBFile.writeFile(built.openmm_topology, built.positions.numpy() * 10, fh)
    molecule = systems.from_pdb(path, forcefield="amber99sb-ildn", solvent=solvent)
    assert isinstance(molecule.energy, TorchForceField)
    xs = perturbed(molecule.positions.numpy())
    ref_energy, ref_force = openmm_reference(molecule.openmm_system, xs)
    u, f = molecule.energy.energy_and_force(torch.from_numpy(xs))
    kT = molecule.energy.kT
    assert np.abs((u * kT).numpy() - ref_energy).max() < 1e-3
    assert relative_force_error((f * kT).numpy(), ref_force).max() < 1e-5


def test_dihedrals_match_mdtraj():
    """``dihedrals`` is the IUPAC angle, as mdtraj computes it."""
    import mdtraj

    xs = np.random.default_rng(2).normal(size=(7, 5, 3))
    quads = np.array([[0, 1, 2, 3], [4, 3, 1, 0], [2, 0, 4, 1]])
    phi = dihedrals(torch.from_numpy(xs).permute(2, 1, 0), torch.from_numpy(quads.T.reshape(-1)))
    expected = mdtraj.compute_dihedrals(mdtraj.Trajectory(xs, topology=None), quads)
    np.testing.assert_allclose(phi.T.numpy(), expected, atol=1e-5)


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
