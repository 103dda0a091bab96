"""Molecular analysis: dihedrals vs mdtraj, validity (chirality, bond graph), W2, PMF, plots."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from boltzflow import systems
from boltzflow.analysis import (
    backbone_dihedral_indices,
    basin_free_energy_difference,
    bond_graph_ok,
    chirality_centers,
    chirality_ok,
    chirality_signs,
    dihedral_angles,
    energy_w2,
    fix_chirality_by_mirroring,
    free_energy_profile,
    mask_invalid,
    plot_free_energy_profiles,
    plot_ramachandran,
    plot_ramachandran_grid,
    ramachandran_angles,
    reference_chirality,
    torus_w2,
    validity,
)
from boltzflow.md import simulate

mdtraj = pytest.importorskip("mdtraj")
pytest.importorskip("openmm")


@pytest.fixture(scope="module")
def aldp():
    return systems.get("aldp-implicit")


@pytest.fixture(scope="module")
def ak():
    return systems.get("dipeptide:AK")


def _md(system, path) -> torch.Tensor:
    """100 frames of 20 ps Langevin MD ``[100, n_atoms, 3]`` (float32, nm)."""
    data = simulate(
        system, path, ns=0.02, frame_interval_ps=0.2, equilibration_ps=5.0, progress=False
    )
    return data.positions


@pytest.fixture(scope="module")
def aldp_md(aldp, tmp_path_factory) -> torch.Tensor:
    return _md(aldp, tmp_path_factory.mktemp("md") / "aldp")


@pytest.fixture(scope="module")
def ak_md(ak, tmp_path_factory) -> torch.Tensor:
    return _md(ak, tmp_path_factory.mktemp("md") / "ak")


def _wrap(a: torch.Tensor) -> torch.Tensor:
    return torch.remainder(a + math.pi, 2 * math.pi) - math.pi


# --- dihedrals ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["aldp", "ak"])
def test_dihedrals_match_mdtraj(name, request):
    system = request.getfixturevalue(name)
    md = request.getfixturevalue(f"{name}_md")
    traj = mdtraj.Trajectory(md.numpy(), system.topology)
    idx = backbone_dihedral_indices(system.topology)
    assert idx["phi"].shape == idx["psi"].shape == (1, 4)  # one φ and one ψ each
    for key, compute in (("phi", mdtraj.compute_phi), ("psi", mdtraj.compute_psi)):
        ref_idx, ref = compute(traj)
        assert idx[key].tolist() == ref_idx.tolist()
        ours = dihedral_angles(md.double(), idx[key])
        assert ours.shape == (len(md), 1)
        assert _wrap(ours - torch.from_numpy(ref).double()).abs().max() < 1e-4
    phi, psi = ramachandran_angles(system, md.double())
    assert phi.shape == psi.shape == (len(md),)
    # dipeptide X-Y: φ of Y (C1-N2-CA2-C2) and ψ of X (N1-CA1-C1-N2) flank the peptide bond
    if name == "ak":
        assert [a.residue.index for a in map(system.topology.atom, idx["phi"][0].tolist())] == [
            0, 1, 1, 1
        ]  # fmt: skip


def test_dihedral_angles_are_differentiable_and_signed():
    x = torch.randn(3, 4, 3, dtype=torch.float64, requires_grad=True)
    quad = torch.tensor([[0, 1, 2, 3]])
    assert torch.autograd.gradcheck(lambda y: dihedral_angles(y, quad), (x,))
    square = torch.tensor([[[1.0, 0, 0], [0, 0, 0], [0, 1, 0], [0, 1, -1]]])
    assert dihedral_angles(square, quad).item() == pytest.approx(math.pi / 2)
    assert dihedral_angles(-square, quad).item() == pytest.approx(-math.pi / 2)  # mirror flips


# --- validity ----------------------------------------------------------------------------------


def _swap(x: torch.Tensor, i: int, j: int) -> torch.Tensor:
    x = x.clone()
    x[:, [i, j]] = x[:, [j, i]]
    return x


@pytest.mark.parametrize("name", ["aldp", "ak"])
def test_mirror_image_is_flagged_and_fixed(name, request):
    system = request.getfixturevalue(name)
    x = system.positions[None].repeat(4, 1, 1)
    centers = chirality_centers(system.topology)
    n_chiral = {"aldp": 1, "ak": 2}[name]
    assert len(centers) == n_chiral
    assert (reference_chirality(system) == 1).all()  # L-amino acids have positive volume
    x[1:3] = -x[1:3]  # D-forms
    assert chirality_ok(x, system).tolist() == [True, False, False, True]
    assert chirality_signs(x, centers)[1].tolist() == [-1.0] * n_chiral
    # the energy does not see the reflection, so the fix leaves log_w unchanged
    u = system.energy.energy(x)
    assert torch.allclose(u[1], u[0])
    fixed = fix_chirality_by_mirroring(x, system)
    assert fixed.n_fixed == 2 and fixed.mirrored.tolist() == [False, True, True, False]
    assert chirality_ok(fixed.x, system).all()
    assert torch.equal(fixed.x, system.positions[None].expand(4, -1, -1))


def test_mixed_chirality_is_not_mirrored(ak):
    x = ak.positions[None].clone()
    ala = next(ak.topology.residues)
    names = {a.name: a.index for a in ala.atoms}
    x = _swap(x, names["CB"], names["HA"])  # swapping two substituents inverts one Cα only
    assert chirality_signs(x, chirality_centers(ak.topology))[0].tolist() == [-1.0, 1.0]
    assert not chirality_ok(x, ak).item()
    fixed = fix_chirality_by_mirroring(x, ak)
    assert fixed.n_fixed == 0 and torch.equal(fixed.x, x)


@pytest.mark.parametrize("name", ["aldp", "ak"])
def test_bond_graph_passes_md_and_flags_broken_and_overlapping(name, request):
    system = request.getfixturevalue(name)
    md = request.getfixturevalue(f"{name}_md")
    assert bond_graph_ok(md, system).all()
    report = validity(md, system)
    assert report.fraction_valid == 1.0 and report.n_valid == len(md)

    # a methyl-like carbon and two of its hydrogens
    top = system.topology
    neighbours = {a.index: [] for a in top.atoms}
    for a, b in top.bonds:
        neighbours[a.index].append(b)
        neighbours[b.index].append(a)
    c, (h1, h2) = next(
        (atom.index, [n.index for n in neighbours[atom.index] if n.element.symbol == "H"][:2])
        for atom in top.atoms
        if atom.element.symbol == "C"
        and sum(n.element.symbol == "H" for n in neighbours[atom.index]) >= 2
    )
    x = system.positions[None].repeat(3, 1, 1)
    bond = x[0, h1] - x[0, c]
    x[1, h1] += 0.06 * bond / bond.norm()  # C-H 0.109 -> 0.169 nm > 1.25 (0.031 + 0.076) nm
    # two geminal hydrogens 0.03 nm apart (< 1.25 · 2 · 0.031 nm); both C-H bonds stay intact
    side = torch.linalg.cross(x[0, h2] - x[0, c], bond)
    x[2, h1] = x[2, h2] + 0.03 * side / side.norm()
    report = validity(x, system)
    assert report.bonds_ok.tolist() == [True, False, False]
    assert report.n_broken_bonds.tolist() == [0, 1, 0]
    assert report.n_extra_bonds.tolist() == [0, 0, 1]
    assert report.chirality_ok.tolist() == [True, True, True]
    assert report.valid.tolist() == [True, False, False]
    assert report.summary()["fraction_bonds_ok"] == pytest.approx(1 / 3)
    log_w = mask_invalid(torch.zeros(3), report.valid)
    assert log_w.tolist() == [0.0, -math.inf, -math.inf]


# --- Wasserstein distances ---------------------------------------------------------------------


def test_energy_w2_exact_small_cases():
    assert energy_w2(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 2.0])) == pytest.approx(1.0)
    # unequal sizes: all of a at 0; half of b at 0, half at 2 -> W2² = 0.5 · 4
    assert energy_w2(torch.tensor([0.0]), torch.tensor([0.0, 2.0])) == pytest.approx(math.sqrt(2))
    # weights: b's point at 2 has weight 0 (log_w = -inf) -> identical distributions
    w = torch.tensor([0.0, -math.inf])
    assert energy_w2(torch.tensor([0.0]), torch.tensor([0.0, 2.0]), log_w_b=w) == 0.0


def test_energy_w2_of_gaussians():
    n = 20_000
    a, a2, b = torch.randn(n), torch.randn(n), torch.randn(n) + 1.0
    assert energy_w2(a, a2) < 0.05
    assert energy_w2(a, b) == pytest.approx(1.0, abs=0.05)  # a translate: W2 = shift
    # N(0, 2²) reweighted to N(1, 1) matches samples of N(1, 1)
    wide = 2.0 * torch.randn(4 * n)
    log_w = -0.5 * (wide - 1.0) ** 2 + 0.5 * (wide / 2.0) ** 2
    assert energy_w2(wide, b, log_w_a=log_w) < 0.06
    assert energy_w2(wide, b) > 0.5


def test_energy_w2_clipping_bounds_outliers():
    a, b = torch.randn(1000), torch.randn(1000)
    a[:5] = 1e6
    assert energy_w2(a, b) > 1e4
    assert energy_w2(a, b, clip_quantile=0.99) < 0.5


def test_torus_w2_wraps_around():
    corner = torch.tensor([math.pi - 0.05, -math.pi + 0.05])
    a = _wrap(corner + 0.1 * torch.randn(300, 2)).double()
    branch = torch.tensor([-1.0, 1.0], dtype=torch.float64)
    shifted = a + 2 * math.pi * branch  # the same points on another branch of the angles
    assert torus_w2(a, shifted) < 1e-6
    # a translate by delta on the torus is |delta| away, also across the ±π seam
    delta = torch.tensor([0.3, -0.2])
    assert torus_w2(a, _wrap(a + delta)) == pytest.approx(float(delta.norm()), rel=1e-6)


def test_torus_w2_weighted_and_subsampled():
    mu, sigma = torch.tensor([-1.5, 2.5]), 0.4
    uniform = torch.rand(20_000, 2) * 2 * math.pi - math.pi
    log_w = -(_wrap(uniform - mu) ** 2).sum(-1) / (2 * sigma**2)
    target = _wrap(mu + sigma * torch.randn(5000, 2))
    reweighted = torus_w2(uniform, target, log_w_a=log_w, max_points=1000)
    raw = torus_w2(uniform, target, max_points=1000)
    assert reweighted < 0.25 and raw > 1.5
    assert torus_w2(uniform, target, log_w_a=log_w, max_points=1000, seed=0) == reweighted


# --- free-energy profiles ----------------------------------------------------------------------


def test_free_energy_profile_of_gaussian_samples():
    x = torch.randn(50_000, dtype=torch.float64)
    profile = free_energy_profile(x, None, 30, bounds=(-2.0, 2.0), n_bootstrap=50)
    assert profile.F.shape == profile.F_err.shape == profile.centers.shape == (30,)
    assert profile.F.min() == 0.0
    exact = profile.centers**2 / 2
    # compare up to a constant: the weighted mean offset
    w = 1 / profile.F_err**2
    offset = ((profile.F - exact) * w).sum() / w.sum()
    assert ((profile.F - exact - offset).abs() < 4 * profile.F_err + 0.02).all()


def test_free_energy_profile_of_reweighted_samples():
    """Uniform proposals reweighted to a double well reproduce U(x) = 2 (x² - 1)²."""
    x = torch.rand(50_000, dtype=torch.float64) * 6 - 3
    u = 2 * (x**2 - 1) ** 2
    profile = free_energy_profile(x, -u, 40, bounds=(-2.0, 2.0), n_bootstrap=50)
    exact = 2 * (profile.centers**2 - 1) ** 2
    low = exact < 4
    diff = profile.F - exact
    diff = diff - diff[low].mean()
    assert (diff[low].abs() < 4 * profile.F_err[low] + 0.05).all()
    # empty bins are +inf with undefined error
    empty = free_energy_profile(torch.tensor([0.1, 0.2]), None, 4, bounds=(0.0, 1.0))
    assert torch.isinf(empty.F[2:]).all() and torch.isnan(empty.F_err[2:]).all()


def test_basin_free_energy_difference_synthetic():
    phi = torch.rand(40_000, dtype=torch.float64) * 2 * math.pi - math.pi
    log_w = torch.where(phi >= 0, math.log(0.25), 0.0)  # positive basin 4x less likely
    df = basin_free_energy_difference(phi, log_w, n_bootstrap=100)
    assert df.value == pytest.approx(math.log(4), abs=4 * df.stderr)
    assert df.stderr < 0.05
    # a narrower positive basin (0 ≤ φ ≤ π/2) holds half the mass
    narrow = basin_free_energy_difference(phi, log_w, phi_max=math.pi / 2, n_bootstrap=20)
    assert narrow.value == pytest.approx(math.log(8), abs=0.1)


# --- plots -------------------------------------------------------------------------------------


def test_molecular_plots_write_pngs(tmp_path, aldp, aldp_md):
    phi, psi = ramachandran_angles(aldp, aldp_md)
    noise_phi, noise_psi = torch.rand(2, 500) * 2 * math.pi - math.pi
    panels = [
        ("MD", phi, psi, None),
        ("reweighted", noise_phi, noise_psi, -(noise_phi**2)),
    ]
    paths = [
        plot_ramachandran(panels, tmp_path / "rama.png"),
        plot_ramachandran(panels[:1], tmp_path / "rama_deg.png", degrees=True),
        plot_ramachandran_grid(panels * 4, tmp_path / "grid.png", n_cols=3),
        plot_free_energy_profiles(
            [
                ("MD", free_energy_profile(phi, bins=20, bounds=(-math.pi, math.pi))),
                ("noise", free_energy_profile(noise_phi, -(noise_phi**2), 20)),
            ],
            tmp_path / "profiles.png",
        ),
    ]
    for path in paths:
        assert path.exists() and path.stat().st_size > 5000
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)  # no temps
    assert np.isfinite(phi.numpy()).all()


# --- where the log-weights spread ----------------------------------------------------------------


def test_energy_term_sources_finds_the_term_the_weights_follow(aldp, aldp_md):
    from boltzflow.analysis.molecular import SOURCE_WINDOW, energy_term_sources
    from boltzflow.conventions import kT
    from boltzflow.energies.forcefield import TorchForceField

    gen = torch.Generator().manual_seed(0)
    x = aldp_md.double() + 0.003 * torch.randn(aldp_md.shape, generator=gen, dtype=torch.float64)
    ff = TorchForceField(aldp.openmm_system, aldp.temperature).double()
    lj = ff.terms(x)["lj"] / kT(aldp.temperature)
    sources = energy_term_sources(aldp, x, -lj, aldp_md)  # weights that follow the LJ term only
    by_term = {s["term"]: s for s in sources}
    assert set(by_term) == {*ff.term_names, "all terms"}
    assert by_term["lj"]["share"] == pytest.approx(1.0, abs=1e-9)
    assert by_term["all terms"]["share"] == pytest.approx(1.0, abs=1e-9)
    assert max(s["share"] for s in sources if s["term"] not in ("lj", "all terms")) < 0.9
    # the terms add up to the reduced energy, in samples and in MD
    u = ff.energy(x)
    assert by_term["all terms"]["model_mean"] == pytest.approx(float(u.mean()), rel=1e-9)
    assert by_term["all terms"]["md_mean"] == pytest.approx(
        float(ff.energy(aldp_md.double()).mean()), rel=1e-9)
    assert by_term["lj"]["md_mean"] == pytest.approx(
        float((ff.terms(aldp_md.double())["lj"] / kT(aldp.temperature)).mean()), rel=1e-9)
    # samples far below the median weight are left out; non-finite weights too
    log_w = -lj.clone()
    log_w[0], log_w[1] = -float("inf"), float(log_w.median()) - SOURCE_WINDOW - 1
    kept = energy_term_sources(aldp, x, log_w, aldp_md)
    expected = float(u[2:].mean())
    assert {s["term"]: s for s in kept}["all terms"]["model_mean"] == pytest.approx(expected)
    assert energy_term_sources(aldp, x[:2], -lj[:2], aldp_md) is None
