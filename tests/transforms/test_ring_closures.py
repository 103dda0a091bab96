"""Ring closures in the internal-coordinate layer: the closing bond of every ring is a
coordinate, the transform stays an exact bijection with the right log-determinant."""

from __future__ import annotations

import math
from functools import cache

import pytest
import torch

import boltzflow as bf
from boltzflow import testing
from boltzflow.transforms import InternalCoordinates, ZMatrix, build_zmatrix, zmatrix_from_graph

RINGS = ["peptide:ACE-PHE-NME", "peptide:ACE-TRP-NME", "peptide:ACE-PRO-NME"]


@cache
def _setup(system_id: str) -> tuple[object, InternalCoordinates]:
    system = bf.systems.get(system_id)
    return system, InternalCoordinates(build_zmatrix(system.topology, ring_closures=True))


def _perturbed(system_id: str, n: int, seed: int) -> torch.Tensor:
    """Thermal-size noise on the minimized structure's ICs (lengths 0.003 nm, angles 0.05)."""
    system, ic = _setup(system_id)
    g = torch.Generator().manual_seed(seed)
    z = ic.inverse(torch.as_tensor(system.positions, dtype=torch.float64)[None])[0].repeat(n, 1)
    noise = torch.randn(z.shape, generator=g, dtype=torch.float64)
    noise[:, ic.true_angle_indices] *= 0.05
    noise[:, ic.length_indices] *= 0.003
    noise[:, ic.torsion_indices] *= 0.05
    z = z + noise
    t = ic.torsion_indices
    z[:, t] = torch.remainder(z[:, t] - math.pi, -2 * math.pi) + math.pi  # into (-π, π]
    return z


@pytest.mark.parametrize("system_id", RINGS)
def test_every_ring_bond_is_a_coordinate(system_id):
    """Each bond is a tree bond (row i to its partner j) or a closure row's ``i-m`` bond, and
    forward reproduces the closing bond exactly."""
    system, ic = _setup(system_id)
    zm = ic.zmatrix
    rows = zm.rows.tolist()
    covered = {frozenset(r[:2]) for r in rows[1:]}
    covered |= {frozenset((r[0], r[2])) for r, c in zip(rows, zm.closures.tolist()) if c}
    bonds = {frozenset((a.index, b.index)) for a, b in system.topology.bonds}
    assert bonds == covered
    n_rings = len(bonds) - (system.topology.n_atoms - 1)
    assert int(zm.closures.sum()) == n_rings == (2 if "TRP" in system_id else 1)
    z = _perturbed(system_id, 8, seed=0)
    x, _ = ic.forward(z)
    i, _, m, _ = zm.internal[zm.closures[3:]].T
    assert torch.allclose((x[:, i] - x[:, m]).norm(dim=-1), z[:, ic.closure_indices], atol=1e-12)


@pytest.mark.parametrize("system_id", RINGS)
def test_ring_round_trip_and_logdet_against_autograd(system_id):
    """Exact inverse and the rigid-body factored Jacobian (autograd), closure rows included."""
    _, ic = _setup(system_id)
    z = _perturbed(system_id, 2, seed=1)
    _, logdet = ic.forward(z)
    assert torch.allclose(logdet, testing.rigid_factored_logdet(ic, z), atol=1e-8)
    testing.assert_inverse(ic, z, atol=1e-10)
    testing.assert_logdets_cancel(ic, z, atol=1e-10)


def test_closure_outside_the_triangle_inequality_has_zero_weight():
    """A closing bond longer than the two other sides allow has no preimage: logdet -inf."""
    _, ic = _setup("peptide:ACE-PHE-NME")
    z = _perturbed("peptide:ACE-PHE-NME", 3, seed=2)
    z[1, ic.closure_indices] = 1.0  # nm: the ring cannot close
    x, logdet = ic.forward(z)
    assert torch.isfinite(x).all()
    assert math.isinf(logdet[1]) and logdet[1] < 0
    assert torch.isfinite(logdet[[0, 2]]).all()


def test_closures_are_optional_and_validated():
    """Without rings or without the option, no closure rows; frame rows cannot be closures."""
    benzene = [(i, (i + 1) % 6) for i in range(6)]
    plain = zmatrix_from_graph(6, benzene, [False] * 6)
    closed = zmatrix_from_graph(6, benzene, [False] * 6, ring_closures=True)
    assert not plain.closures.any() and int(closed.closures.sum()) == 1
    aldp = bf.systems.get("aldp-implicit").topology
    assert not build_zmatrix(aldp, ring_closures=True).closures.any()
    with pytest.raises(ValueError, match="frame rows"):
        ZMatrix(plain.rows, torch.tensor([True] + [False] * 5))
