"""Internal coordinates, Z-matrices, the torus prior and the molecular Boltzmann generator."""

from __future__ import annotations

import math
from functools import cache

import mdtraj
import numpy as np
import pytest
import torch
from torch import Tensor

import boltzflow as bf
from boltzflow import Flow, testing
from boltzflow.analysis.validity import validity
from boltzflow.distributions import ProductBase
from boltzflow.errors import ConfigError
from boltzflow.models import parse_config
from boltzflow.models.internal import InternalParams, build_molecular_flow
from boltzflow.transforms import (
    Chain,
    InternalCoordinates,
    Normalization,
    ZMatrix,
    build_zmatrix,
    zmatrix_from_graph,
)
from boltzflow.transforms.ic_normalization import fit_ic_normalization, rigid_torsions

MOLECULES = ["aldp-implicit", "dipeptide:KW"]


@cache
def _system(system_id: str):
    return bf.systems.get(system_id)


@cache
def _ic(system_id: str) -> InternalCoordinates:
    return InternalCoordinates(build_zmatrix(_system(system_id).topology))


def _random_pose(x: Tensor, seed: int) -> Tensor:
    """``x`` under a random proper rotation and translation (one per configuration)."""
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(len(x), 3, 3, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
    q[torch.linalg.det(q) < 0, :, 0] *= -1
    shift = torch.randn(len(x), 1, 3, generator=g, dtype=torch.float64)
    return (x.to(torch.float64) @ q.transpose(-1, -2) + shift).to(x.dtype)


def _perturbed_ics(system_id: str, n: int, seed: int, torsion_noise: float = 0.3) -> Tensor:
    """``[n, 3N - 6]`` float64: the minimized structure's ICs with thermal-size noise."""
    ic = _ic(system_id)
    g = torch.Generator().manual_seed(seed)
    z = ic.inverse(_system(system_id).positions[None])[0].repeat(n, 1)
    noise = torch.randn(z.shape, generator=g, dtype=torch.float64)
    noise[:, ic.bond_indices] *= 0.003
    noise[:, ic.angle_indices] *= 0.05
    noise[:, ic.torsion_indices] *= torsion_noise
    z = z + noise
    t = ic.torsion_indices
    z[:, t] = torch.remainder(z[:, t] - math.pi, -2 * math.pi) + math.pi  # into (-π, π]
    return z


def _pairwise(x: Tensor) -> Tensor:
    # the matrix-product shortcut of cdist (used past 25 atoms) loses ~sqrt(eps) relative accuracy
    return torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")


# -- Z-matrix ---------------------------------------------------------------------------------


@pytest.mark.parametrize("system_id", MOLECULES)
def test_zmatrix_places_every_atom_once_after_its_bonded_references(system_id):
    topology = _system(system_id).topology
    zm = build_zmatrix(topology)
    bonded = {frozenset((a.index, b.index)) for a, b in topology.bonds}
    assert sorted(zm.order.tolist()) == list(range(topology.n_atoms))
    rank = {a: r for r, a in enumerate(zm.order.tolist())}
    for i, j, k, t in zm.internal.tolist():
        assert max(rank[j], rank[k], rank[t]) < rank[i] and len({i, j, k, t}) == 4
        assert frozenset((i, j)) in bonded and frozenset((j, k)) in bonded
        assert frozenset((k, t)) in bonded or frozenset((j, t)) in bonded  # proper or sibling
    a0, a1, a2 = zm.frame.tolist()
    assert {frozenset((a0, a1)), frozenset((a0, a2))} <= bonded
    elements = [a.element.symbol for a in topology.atoms]
    assert all(elements[a] != "H" for a in zm.frame.tolist())
    # heavy atoms first, hydrogens after their carrier
    kinds = [elements[a] == "H" for a in zm.order.tolist()]
    assert kinds == sorted(kinds)
    assert torch.equal(build_zmatrix(topology).rows, zm.rows)  # deterministic


def test_zmatrix_of_alanine_dipeptide_has_phi_and_psi_as_torsions():
    topology = _system("aldp-implicit").topology
    names = {f"{a.residue.name}:{a.name}": a.index for a in topology.atoms}
    rows = {tuple(r) for r in build_zmatrix(topology).internal.tolist()}
    phi = tuple(names[a] for a in ("ACE:C", "ALA:N", "ALA:CA", "ALA:C"))
    psi = tuple(names[a] for a in ("NME:N", "ALA:C", "ALA:CA", "ALA:N"))
    assert phi in rows and psi in rows
    assert names["ALA:CA"] == int(build_zmatrix(topology).frame[0])  # frame in the middle


def test_zmatrix_of_small_and_bad_graphs():
    # water: fewer than 3 heavy atoms -> all atoms form the skeleton
    assert zmatrix_from_graph(3, [(0, 1), (0, 2)], [False, True, True]).order.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="not one connected molecule"):
        zmatrix_from_graph(4, [(0, 1), (2, 3)], [False] * 4)
    with pytest.raises(ValueError, match="at least 3 atoms"):
        zmatrix_from_graph(2, [(0, 1)], [False] * 2)
    with pytest.raises(ValueError, match="exactly once"):
        ZMatrix(torch.tensor([[0, -1, -1, -1], [1, 0, -1, -1], [1, 0, 1, -1]]))
    with pytest.raises(ValueError, match="placed before"):
        ZMatrix(
            torch.tensor([[0, -1, -1, -1], [1, 0, -1, -1], [2, 0, 1, -1], [3, 2, 1, 4],
                          [4, 3, 2, 1]])
        )  # fmt: skip


# -- internal coordinates ---------------------------------------------------------------------


@pytest.mark.parametrize("system_id", MOLECULES)
@pytest.mark.parametrize(("dtype", "atol"), [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_cartesian_round_trip_any_pose(system_id, dtype, atol):
    ic = _ic(system_id)
    x = ic.forward(_perturbed_ics(system_id, 16, seed=1))[0]
    x = _random_pose(x, seed=2).to(dtype)
    z, logdet = ic.inverse(x)
    assert z.dtype == dtype and z.shape == (16, 3 * ic.n_atoms - 6) and logdet.shape == (16,)
    x_back, logdet_back = ic.forward(z)
    # same shape up to rigid motion: all pairwise distances and the (signed) torsions agree
    err = (_pairwise(x_back) - _pairwise(x)).abs().max().item()
    assert err < atol, f"pairwise distances change by {err:.2e} nm on the round trip"
    assert torch.allclose(ic.inverse(x_back)[0], z, atol=10 * atol)
    assert torch.allclose(logdet + logdet_back, torch.zeros_like(logdet), atol=10 * atol)
    # canonical frame: a0 at the origin, a1 on +x, a2 in the upper xy half-plane
    a0, a1, a2 = (x_back[:, a] for a in ic.zmatrix.frame)
    assert a0.abs().max() == 0 and a1[:, 1:].abs().max() == 0
    assert a2[:, 2].abs().max() == 0 and (a2[:, 1] > 0).all()


@pytest.mark.parametrize("system_id", MOLECULES)
def test_torsions_match_mdtraj_and_lie_in_half_open_interval(system_id):
    ic = _ic(system_id)
    x = ic.forward(_perturbed_ics(system_id, 4, seed=3, torsion_noise=2.0))[0]
    torsions = ic.split(ic.inverse(x)[0]).torsions
    traj = mdtraj.Trajectory(x.numpy().astype(np.float32), _system(system_id).topology)
    ref = mdtraj.compute_dihedrals(traj, ic.zmatrix.internal.numpy(), periodic=False)
    diff = torch.remainder(torsions - torch.from_numpy(ref) + math.pi, 2 * math.pi) - math.pi
    assert diff.abs().max() < 1e-5
    assert (torsions > -math.pi).all() and (torsions <= math.pi).all()


def test_torsions_near_plus_minus_pi_are_periodic():
    ic = _ic("aldp-implicit")
    z = _perturbed_ics("aldp-implicit", 5, seed=4)
    tiny = 1e-9
    for row, value in enumerate([math.pi, -math.pi, math.pi - tiny, -math.pi + tiny, 3 * math.pi]):
        z[row, ic.torsion_indices] = value
    torsions = ic.split(ic.inverse(ic.forward(z)[0])[0]).torsions
    assert (torsions > -math.pi).all() and (torsions <= math.pi).all()
    wrapped = torch.remainder(z[:, ic.torsion_indices] - torsions + math.pi, 2 * math.pi) - math.pi
    assert wrapped.abs().max() < 1e-8
    assert torch.allclose(torsions[1], torch.full_like(torsions[1], math.pi))  # -π -> π
    # a torsion shifted by 2π gives the same molecule
    shifted = z.clone()
    shifted[:, ic.torsion_indices] += 2 * math.pi
    assert torch.allclose(ic.forward(shifted)[0], ic.forward(z)[0], atol=1e-12)


@pytest.mark.parametrize(("system_id", "n"), [("aldp-implicit", 3), ("dipeptide:KW", 1)])
def test_logdet_is_the_rigid_body_factored_jacobian(system_id, n):
    """The forward logdet equals ``log|det ∂x/∂(translation, rotation, ICs)|`` (square, exact).

    ``testing.assert_logdet`` would compare with the surface factor ``½ log det(JᵀJ)`` of the
    canonical-frame embedding instead; that is the measure on the frame-fixed manifold, not the
    one for which rigid-invariant importance weights are exact. The two differ by
    ``log(b₀² b₁ sin θ₀)`` of the frame, which is checked here too.
    """
    ic = _ic(system_id)
    z = _perturbed_ics(system_id, n, seed=5, torsion_noise=1.0)
    _, logdet = ic.forward(z)
    assert torch.allclose(logdet, testing.rigid_factored_logdet(ic, z), atol=1e-8)
    jac = torch.stack(
        [torch.autograd.functional.jacobian(lambda v: ic.forward(v[None])[0].reshape(-1), zi)
         for zi in z]
    )  # fmt: skip
    embedding = 0.5 * torch.linalg.slogdet(jac.transpose(-1, -2) @ jac)[1]
    ics = ic.split(z)
    frame = 2 * ics.bonds[:, 0].log() + ics.bonds[:, 1].log() + ics.angles[:, 0].sin().log()
    assert torch.allclose(logdet - frame, embedding, atol=1e-8)
    testing.assert_inverse(ic, z, atol=1e-10)
    testing.assert_logdets_cancel(ic, z, atol=1e-10)


def test_logdet_gives_exact_importance_weights_for_a_harmonic_chain():
    """Z of a 4-atom chain with harmonic bonds and angles, by importance sampling vs quadrature.

    ``u = Σ k_b (b - b₀)² + Σ k_θ (θ - θ₀)²`` (free torsion) has the configurational integral
    ``∫ e^{-u} d¹²x / (V 8π²) = ∏ ∫ b² e^{-k_b (b-b₀)²} db · ∏ ∫ sin θ e^{-k_θ (θ-θ₀)²} dθ · 2π``.
    A flow with the wrong frame Jacobian would miss it by orders of magnitude.
    """
    torch.manual_seed(0)
    ic = InternalCoordinates(zmatrix_from_graph(4, [(0, 1), (1, 2), (2, 3)], [False] * 4))
    b0, kb, t0, kt = 0.15, 2000.0, 1.9, 20.0

    def u(x: Tensor) -> Tensor:
        ics = ic.ics(x)
        return kb * (ics.bonds - b0).pow(2).sum(-1) + kt * (ics.angles - t0).pow(2).sum(-1)

    norm = Normalization(ic.dim)
    norm.shift.copy_(torch.tensor([b0 + 0.003] * 3 + [t0 - 0.05] * 2 + [0.0]))
    norm.log_scale.copy_(torch.tensor([0.02] * 3 + [0.25] * 2 + [1.0]).log())
    flow = Flow(ProductBase(ic.dim, ic.torsion_indices), Chain([norm, ic]), (4, 3)).double()
    x, log_q = flow.sample_and_log_prob(100_000)
    log_w = -u(x) - log_q
    z_is = torch.logsumexp(log_w, 0) - math.log(len(x))

    grid_b = torch.linspace(b0 - 0.2, b0 + 0.2, 20001, dtype=torch.float64)
    grid_t = torch.linspace(0.0, math.pi, 20001, dtype=torch.float64)
    z_b = torch.trapezoid(grid_b.clamp_min(0) ** 2 * torch.exp(-kb * (grid_b - b0) ** 2), grid_b)
    z_t = torch.trapezoid(grid_t.sin() * torch.exp(-kt * (grid_t - t0) ** 2), grid_t)
    z_exact = 3 * z_b.log() + 2 * z_t.log() + math.log(2 * math.pi)
    assert abs(z_is - z_exact) < 0.02, f"log Z by IS {z_is:.4f} vs quadrature {z_exact:.4f}"


@pytest.mark.parametrize(
    "rows",
    [
        [[0, -1, -1, -1], [1, 0, -1, -1], [2, 0, 1, -1]],  # water-like, a2 bonded to a0
        [[0, -1, -1, -1], [1, 0, -1, -1], [2, 1, 0, -1], [3, 2, 1, 0]],  # a2 bonded to a1
    ],
)
def test_hand_written_zmatrices(rows):
    ic = InternalCoordinates(ZMatrix(torch.tensor(rows)))
    g = torch.Generator().manual_seed(6)
    x = torch.randn(4, len(rows), 3, generator=g, dtype=torch.float64)
    z, _ = ic.inverse(x)
    x_back, logdet = ic.forward(z)
    assert (_pairwise(x_back) - _pairwise(x)).abs().max() < 1e-12
    assert torch.allclose(ic.inverse(x_back)[0], z, atol=1e-12)
    assert torch.allclose(logdet, testing.rigid_factored_logdet(ic, z), atol=1e-10)


def test_internal_coordinates_reject_bad_shapes():
    ic = _ic("aldp-implicit")
    with pytest.raises(ValueError, match=r"\[batch, 22, 3\]"):
        ic.inverse(torch.zeros(2, 21, 3))
    with pytest.raises(ValueError, match="60"):
        ic.forward(torch.zeros(2, 59))


# -- prior --------------------------------------------------------------------------------------


def test_product_base_is_normalized_and_samples_its_support():
    base = ProductBase(2, circular=[1]).double()
    lin = torch.linspace(-9, 9, 1801, dtype=torch.float64)
    ang = torch.linspace(-math.pi, math.pi, 629, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(lin, ang, indexing="ij"), -1).reshape(-1, 2)
    density = base.log_prob(grid).exp().reshape(len(lin), len(ang))
    total = torch.trapezoid(torch.trapezoid(density, ang, dim=1), lin)
    assert abs(total.item() - 1.0) < 1e-6
    x, log_p = ProductBase(5, circular=[0, 3]).sample_and_log_prob(20000)
    assert torch.allclose(log_p, ProductBase(5, circular=[0, 3]).log_prob(x))
    assert (x[:, [0, 3]].abs() <= math.pi).all() and x[:, [0, 3]].abs().max() > 3.1
    assert abs(x[:, [1, 2, 4]].std().item() - 1.0) < 0.02
    assert abs(x[:, [0, 3]].var().item() - math.pi**2 / 3) < 0.05
    shifted = x.clone()
    shifted[:, 3] += 2 * math.pi  # angles are read modulo 2π
    assert torch.equal(ProductBase(5, circular=[0, 3]).log_prob(shifted), log_p)
    with pytest.raises(ValueError, match="circular"):
        ProductBase(3, circular=[3])


# -- the molecular Boltzmann generator -----------------------------------------------------------

CONFIG = InternalParams(n_layers=4, hidden=[32, 32], n_bins=6, bound=5.0)


def _data(n: int, seed: int) -> Tensor:
    """Alanine-dipeptide-like configurations ``[n, 22, 3]`` float32 in random poses: thermal
    noise on bonds and angles, two (φ, ψ) basins and rotor noise on the other torsions."""
    ic = _ic("aldp-implicit")
    z = _perturbed_ics("aldp-implicit", n, seed)
    topology = _system("aldp-implicit").topology
    names = {f"{a.residue.name}:{a.name}": a.index for a in topology.atoms}
    rows = ic.zmatrix.internal[:, 0].tolist()
    phi = ic.torsion_indices[rows.index(names["ACE:C"])]
    psi = ic.torsion_indices[rows.index(names["NME:N"])]
    g = torch.Generator().manual_seed(seed + 100)
    basin = torch.rand(n, generator=g) < 0.3
    z[:, phi] = torch.where(basin, 1.0, -1.4) + 0.3 * torch.randn(n, generator=g)
    z[:, psi] = torch.where(basin, -0.8, 2.6) + 0.3 * torch.randn(n, generator=g)
    return _random_pose(ic.forward(z)[0], seed).float()


def test_molecular_flow_log_prob_of_own_samples_equals_log_q():
    system = _system("aldp-implicit")
    torch.manual_seed(0)
    flow = build_molecular_flow(system, CONFIG, _data(256, seed=0))
    for p in flow.parameters():  # a non-trivial flow
        p.data.normal_(0, 0.1)
    assert flow.event_shape == (22, 3)
    x, log_q = flow.double().sample_and_log_prob(64)
    assert x.shape == (64, 22, 3) and log_q.shape == (64,)
    assert torch.allclose(flow.log_prob(x), log_q, atol=1e-8)
    assert torch.allclose(flow.log_prob(_random_pose(x, seed=1)), log_q, atol=1e-8)
    assert torch.isfinite(system.energy.double().energy(x)).all()
    testing.assert_bijection_gradients(flow.bijection, flow.base.sample(8))


def test_molecular_flow_normalization_and_checkpoint_reload():
    system = _system("aldp-implicit")
    data = _data(512, seed=1)
    flow = build_molecular_flow(system, CONFIG, data)
    ic, norm = flow.bijection.bijections[2], flow.bijection.bijections[1]
    z = norm.inverse(ic.inverse(data.double())[0].float())[0]
    rigid = rigid_torsions(ic, system.topology)
    euclid = torch.cat([ic.bond_indices, ic.angle_indices, ic.torsion_indices[rigid]])
    assert z[:, euclid].mean(0).abs().max() < 1e-3 and (z[:, euclid].std(0) - 1).abs().max() < 1e-3
    free = ic.torsion_indices[~rigid]
    assert torch.equal(norm.log_scale[free], torch.zeros(len(free)))
    assert z[:, free].abs().max() <= math.pi  # read in the window around the circular mean
    assert flow.base.is_circular.nonzero()[:, 0].tolist() == free.tolist()
    assert fit_ic_normalization(ic, data[:1]).log_scale[0].exp().item() == pytest.approx(0.003)
    fresh = build_molecular_flow(system, CONFIG)  # no data: same architecture
    fresh.load_state_dict(flow.state_dict())
    assert torch.allclose(fresh.log_prob(data[:8]), flow.log_prob(data[:8]))
    # torsions need circular splines: the internal kind has no affine transform to choose
    with pytest.raises(ConfigError, match="unknown key 'transform' in section 'internal'"):
        parse_config({"system": {"id": "aldp-implicit"}, "internal": {"transform": "affine"}})


def test_maximum_likelihood_training_lowers_the_nll():
    torch.manual_seed(0)
    data, test = _data(2000, seed=2), _data(500, seed=3)
    flow = build_molecular_flow(_system("aldp-implicit"), CONFIG, data)
    optimizer = torch.optim.Adam(flow.parameters(), lr=3e-3)
    before = -flow.log_prob(test).mean().item()
    for _ in range(60):
        batch = data[torch.randint(len(data), (128,))]
        loss = -flow.log_prob(batch).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        after = -flow.log_prob(test).mean().item()
    # the rigid torsions start right (normal at the data scale): the gain is in φ, ψ and rotors
    assert math.isfinite(after) and after < before - 5.0, f"NLL {before:.2f} -> {after:.2f}"


def test_rigid_torsions_are_the_sibling_ones_and_phi_psi_are_free():
    system = _system("aldp-implicit")
    ic = _ic("aldp-implicit")
    rigid = rigid_torsions(ic, system.topology)
    names = [f"{a.residue.name}:{a.name}" for a in system.topology.atoms]
    placed = [names[i] for i in ic.zmatrix.internal[:, 0].tolist()]
    rigid_names = {n for n, r in zip(placed, rigid.tolist()) if r}
    assert {"ALA:CB", "ALA:HA", "ACE:O", "ALA:O", "ACE:H2", "ACE:H3", "ALA:HB2"} <= rigid_names
    assert not {"ACE:C", "NME:N", "ACE:H1", "ALA:HB1"} & rigid_names  # φ, ψ, methyl rotors


def test_ic_normalization_wraps_torsions_into_the_window_around_the_mean():
    ic = _ic("aldp-implicit")
    z = _perturbed_ics("aldp-implicit", 64, seed=4)
    t = ic.torsion_indices
    z[:, t[0]] = math.pi - 0.05 * torch.rand(64, dtype=torch.float64)  # a peak on the seam
    z[: 32, t[0]] -= 2 * math.pi - 0.1
    x = ic.forward(z)[0]
    rigid = torch.zeros(len(t), dtype=torch.bool)
    rigid[0] = True
    norm = fit_ic_normalization(ic, x, rigid)
    assert abs(abs(norm.shift[t[0]].item()) - math.pi) < 0.1
    latent, logdet = norm.inverse(ic.inverse(x)[0])
    assert latent[:, t[0]].abs().max() < 3.0  # standardized, not split across the seam
    back, logdet_f = norm.forward(latent)
    assert torch.allclose(torch.cos(back - ic.inverse(x)[0]), torch.ones_like(back), atol=1e-9)
    assert torch.allclose(logdet, -logdet_f)
    assert (back[:, t] >= -math.pi).all() and (back[:, t] < math.pi).all()


def test_untrained_flow_fitted_to_data_keeps_chirality_and_hydrogens_apart():
    # Data with MD-like spreads (0.1 rad on torsions). A freshly built flow samples every rigid
    # torsion from a normal at the data's scale: the Cα chirality and the ±120° methyl
    # hydrogens come out right, however φ, ψ and the rotors (uniform) fall. With uniform rigid
    # torsions half the samples would be D-alanine.
    system = _system("aldp-implicit")
    torch.manual_seed(0)
    ic = _ic("aldp-implicit")
    data = _random_pose(ic.forward(_perturbed_ics("aldp-implicit", 512, 5, 0.1))[0], 5).float()
    flow = build_molecular_flow(system, CONFIG, data)
    x, _ = flow.sample_and_log_prob(2000)
    report = validity(x.double(), system)
    assert report.summary()["fraction_chirality_ok"] == 1.0
    methyl = [[a.index for a in r.atoms if a.name in ("H1", "H2", "H3")] for r in
              system.topology.residues if r.name in ("ACE", "NME")]
    for h1, h2, h3 in methyl:
        for a, b in ((h1, h2), (h1, h3), (h2, h3)):
            assert (x[:, a] - x[:, b]).norm(dim=-1).min() > 0.13  # H-H ~0.178 nm in a methyl
