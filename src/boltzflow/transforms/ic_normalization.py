"""``ICNormalization``: normalization of flat internal coordinates that respects the torsions'
period, and its fit to data (bonds, angles and rigid torsions to the data scale; free torsions
only rotated).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from .internal import InternalCoordinates
from .normalization import Normalization

__all__ = [
    "ANGLE_STD",
    "BOND_STD",
    "RIGID_TORSION_STD",
    "ICNormalization",
    "fit_ic_normalization",
    "rigid_torsions",
]

#: Scales (nm, rad) used without data: thermal spreads of bonds, angles and rigid torsions of a
#: small peptide at 300 K (measured on alanine dipeptide MD: 0.0022-0.0030 nm, 0.047-0.072 rad,
#: and 0.08-0.20 rad for the rigid torsions).
BOND_STD = 0.003
ANGLE_STD = 0.06
RIGID_TORSION_STD = 0.1


def rigid_torsions(ic: InternalCoordinates, topology: Any, rings: bool = False) -> Tensor:
    """``bool[n_atoms - 3]``: which torsions are *rigid* (improper-like or in a ring), per row.

    A torsion ``i-j-k-l`` whose partner ``l`` is bonded to ``j`` (a sibling of ``i``, see
    :func:`~boltzflow.transforms.zmatrix.zmatrix_from_graph`) places ``i`` relative to another
    substituent of the same atom: the second and third methyl hydrogens (±120°), Cβ and Hα
    against N-Cα-C (the chirality), a carbonyl O or an amide H (planarity). These vary by a few
    degrees (0.08-0.20 rad on alanine dipeptide MD) and are modelled as Euclidean coordinates.
    With ``rings``, a proper torsion about a bond that lies in a ring (a proline or aromatic
    ring's own torsions) is rigid too: the ring keeps it within a few degrees of its mean, and
    a circular (uniform-prior) torsion there would break the ring.
    The others are proper torsions about a bond (φ, ψ, ω, χ, methyl rotors): they stay circular.
    The rule reads only the bond graph, so a flow built without data has the same architecture.
    """
    pairs = [(a.index, b.index) for a, b in topology.bonds]
    bonded = {frozenset(p) for p in pairs}
    in_ring = _ring_bonds(pairs) if rings else set()
    rows = ic.zmatrix.internal.tolist()
    return torch.tensor([frozenset((j, t)) in bonded or frozenset((j, k)) in in_ring
                         for _, j, k, t in rows], dtype=torch.bool)


def _ring_bonds(pairs: list[tuple[int, int]]) -> set[frozenset[int]]:
    """The bonds that lie on a cycle of the bond graph (their ends stay connected without
    them)."""
    neighbours: dict[int, set[int]] = {}
    for a, b in pairs:
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
    out = set()
    for a, b in pairs:
        seen, stack = {a}, [a]
        while stack and b not in seen:
            u = stack.pop()
            for v in neighbours[u]:
                if v not in seen and {u, v} != {a, b}:
                    seen.add(v)
                    stack.append(v)
        if b in seen:
            out.add(frozenset((a, b)))
    return out


def _wrap(angle: Tensor) -> Tensor:
    """Angles into ``[-π, π)``."""
    return torch.remainder(angle + math.pi, 2 * math.pi) - math.pi


class ICNormalization(Normalization):
    """:class:`Normalization` of flat internal coordinates that respects the torsions' period.

    ``forward``: ``x = z · scale + shift`` with torsions wrapped into ``[-π, π)``; ``inverse``:
    the torsions' offsets ``x - shift`` are wrapped into ``[-π, π)`` before dividing by the
    scale. So a torsion is read in the window of width ``2π`` centred on its (circular) mean:
    circular torsions (scale 1) reach the circular splines in ``[-π, π)`` and rigid torsions
    (scale ≈ 0.1 rad) become standardized Euclidean coordinates, far from the seam. Wrapping
    has log-det 0; the map is a bijection on ``|z · scale| < π`` (30 standard deviations for a
    rigid torsion).

    Args:
        dim: number of internal coordinates ``3 n_atoms - 6``.
        torsions: positions of the torsions in the flat vector.
    """

    def __init__(self, dim: int, torsions: Tensor):
        super().__init__(dim)
        self.register_buffer("torsions", torch.as_tensor(torsions, dtype=torch.long), False)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        x, logdet = super().forward(z)
        return x.index_copy(1, self.torsions, _wrap(x[:, self.torsions])), logdet

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check(x, "x")
        offset = x - self.shift
        offset = offset.index_copy(1, self.torsions, _wrap(offset[:, self.torsions]))
        return offset * torch.exp(-self.log_scale), -self.log_scale.sum().expand(len(x))


def fit_ic_normalization(
    ic: InternalCoordinates, x: Tensor, rigid: Tensor | None = None
) -> ICNormalization:
    """An :class:`ICNormalization` of the flat internal coordinates, fitted to Cartesian ``x``.

    Bonds, angles and rigid torsions get the mean and standard deviation of ``x``'s internal
    coordinates (for rigid torsions: of the offsets from the circular mean, wrapped), so a standard-normal
    latent maps to the data's scale (bond spreads are ~0.003 nm, so the splines' ``bound`` acts
    in this normalized space). Circular torsions keep unit scale (a circle cannot be stretched)
    and are shifted by their circular mean, a rotation of the circle that moves narrow peaks at
    ±π (planar groups) away from the splines' seam; its log-det is 0. With a single
    configuration (e.g. the minimized structure) the means are its coordinates and the scales
    :data:`BOND_STD`, :data:`ANGLE_STD`, :data:`RIGID_TORSION_STD`.

    Args:
        ic: the internal-coordinate transform.
        x: configurations ``[n, n_atoms, 3]`` (nm), any pose.
        rigid: ``bool[n_atoms - 3]``, torsions to standardize (:func:`rigid_torsions`); none
            if ``None``.

    Returns:
        The fitted (non-trainable) normalization on ``[B, 3 n_atoms - 6]``.
    """
    if x.dim() != 3 or x.shape[1:] != (ic.n_atoms, 3) or len(x) < 1:
        raise ValueError(
            f"data must have shape [n >= 1, {ic.n_atoms}, 3] (nm), got {list(x.shape)}"
        )
    torsions = ic.torsion_indices
    if rigid is None:
        rigid = torch.zeros(len(torsions), dtype=torch.bool)
    rigid = torch.as_tensor(rigid, dtype=torch.bool)
    if rigid.shape != torsions.shape:
        raise ValueError(f"rigid must have shape [{len(torsions)}], got {list(rigid.shape)}")
    z = ic.inverse(x.detach().to(torch.float64))[0]
    shift = z.mean(0)
    shift[torsions] = torch.atan2(z[:, torsions].sin().mean(0), z[:, torsions].cos().mean(0))
    offset = z - shift
    offset[:, torsions] = _wrap(offset[:, torsions])
    # Rigid torsions: centre on the mean of the offsets (a refinement of the circular mean).
    shift[torsions[rigid]] += offset[:, torsions[rigid]].mean(0)
    offset[:, torsions[rigid]] -= offset[:, torsions[rigid]].mean(0)
    if len(z) >= 2:
        log_scale = offset.std(0).clamp_min(1e-6).log()
    else:
        log_scale = torch.zeros(ic.dim, dtype=torch.float64)
        log_scale[ic.bond_indices] = math.log(BOND_STD)
        log_scale[ic.angle_indices] = math.log(ANGLE_STD)
        log_scale[ic.closure_indices] = math.log(BOND_STD)
        log_scale[torsions] = math.log(RIGID_TORSION_STD)
    log_scale[torsions[~rigid]] = 0.0
    norm = ICNormalization(ic.dim, torsions)
    norm.shift.copy_(shift)
    norm.log_scale.copy_(log_scale)
    return norm


