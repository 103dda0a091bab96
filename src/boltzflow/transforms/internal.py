"""Internal coordinates: the bijection between bond-angle-torsion vectors and Cartesian molecules.

Layout of the flat vector ``[B, D]``, ``D = 3 n_atoms - 6`` (``n = n_atoms``)::

    [ bonds (n - 1) | angles (n - 2) | torsions (n - 3) ]

Bonds and angles start with the frame's: ``bonds[0] = |a1 - a0|``, ``bonds[1] = |a2 - j|``,
``angles[0] = ∠ a2-j-k`` (``(j, k)`` = ``(a0, a1)`` from :func:`build_zmatrix`); then one bond, angle and torsion per remaining atom in Z-matrix order.
A ring-closure row ``(i, j, m, k)`` (:class:`~boltzflow.transforms.zmatrix.ZMatrix`) holds the
closing bond ``|x_i - x_m|`` (nm) in its angle slot and the dihedral ``i-j-m-k`` in its torsion
slot (:attr:`InternalCoordinates.closure_indices`).
Units: nm and radians; angles in ``(0, π)``, torsions in ``(-π, π]`` (IUPAC sign).
See ``docs/internal_coordinates.md`` for the conventions and the Jacobian.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .base import Bijection
from .zmatrix import ZMatrix

__all__ = ["ICs", "InternalCoordinates", "bond_angle", "dihedral", "place_atom"]

_EPS = 1e-12


@dataclass(frozen=True)
class ICs:
    """Internal coordinates of a batch, split by kind.

    Attributes:
        bonds: ``[B, n_atoms - 1]`` bond lengths (nm); the frame's two first.
        angles: ``[B, n_atoms - 2]`` bond angles (rad) in ``(0, π)``; the frame's first; a
            ring-closure row's slot holds its closing bond (nm).
        torsions: ``[B, n_atoms - 3]`` dihedrals (rad) in ``(-π, π]``.
    """

    bonds: Tensor
    angles: Tensor
    torsions: Tensor

    def flat(self) -> Tensor:
        """The flat vector ``[B, 3 n_atoms - 6]``: ``(bonds, angles, torsions)``."""
        return torch.cat([self.bonds, self.angles, self.torsions], dim=-1)


def _unit(v: Tensor) -> Tensor:
    return v / v.norm(dim=-1, keepdim=True).clamp_min(_EPS)


def bond_angle(x_i: Tensor, x_j: Tensor, x_k: Tensor) -> Tensor:
    """Angle ``∠ i-j-k`` at vertex ``j`` in ``[0, π]``; ``atan2`` form, accurate near 0 and π.

    Args:
        x_i, x_j, x_k: positions ``[..., 3]``.
    """
    u, v = x_i - x_j, x_k - x_j
    return torch.atan2(torch.linalg.cross(u, v).norm(dim=-1), (u * v).sum(-1))


def dihedral(x_i: Tensor, x_j: Tensor, x_k: Tensor, x_l: Tensor) -> Tensor:
    """Dihedral ``i-j-k-l`` (rotation about ``j-k``) in ``(-π, π]``, IUPAC sign (as mdtraj).

    Args:
        x_i, x_j, x_k, x_l: positions ``[..., 3]``.
    """
    b1, b2, b3 = x_j - x_i, x_k - x_j, x_l - x_k
    n1, n2 = torch.linalg.cross(b1, b2), torch.linalg.cross(b2, b3)
    y = (torch.linalg.cross(n1, n2) * _unit(b2)).sum(-1)
    phi = torch.atan2(y, (n1 * n2).sum(-1))
    return torch.where(phi <= -math.pi, phi + 2 * math.pi, phi)


def place_atom(
    x_j: Tensor, x_k: Tensor, x_l: Tensor, bond: Tensor, angle: Tensor, torsion: Tensor
) -> Tensor:
    """Position ``[..., 3]`` of atom ``i`` from its references (NeRF, Parsons et al., 2005).

    ``|x_i - x_j| = bond``, ``∠ i-j-k = angle``, ``dihedral(i, j, k, l) = torsion``.

    Args:
        x_j, x_k, x_l: bond, angle and torsion partners ``[..., 3]``.
        bond, angle, torsion: ``[...]`` (nm, rad, rad).
    """
    e_kj = _unit(x_j - x_k)
    normal = _unit(torch.linalg.cross(x_k - x_l, e_kj))
    in_plane = torch.linalg.cross(normal, e_kj)
    r_sin = bond * angle.sin()
    local = torch.stack([-bond * angle.cos(), r_sin * torsion.cos(), r_sin * torsion.sin()], -1)
    return x_j + local[..., :1] * e_kj + local[..., 1:2] * in_plane + local[..., 2:] * normal


class InternalCoordinates(Bijection):
    """Bond-angle-torsion coordinates of a molecule, without its 6 rigid-body degrees of freedom.

    ``forward`` builds Cartesian coordinates ``x: [B, n_atoms, 3]`` (nm) from the flat
    internal-coordinate vector ``z: [B, 3 n_atoms - 6]`` (layout in the module docstring) in the
    **canonical frame**: frame atom ``a0`` at the origin, ``a1`` on the +x axis, ``a2`` in the
    xy-plane with ``y > 0``. ``inverse`` reads the internal coordinates of ``x`` in any position
    and orientation (they are invariant under rigid motion; mirror images are not identified).

    ``logdet`` is the log-Jacobian of Cartesian space factored into translation × rotation ×
    internal coordinates, with the rotation measured by its Haar measure (total ``8π²``) and the
    translation by its volume:

        ``d³ⁿx = d³t · dR · (∏_bonds b²) · (∏_angles sin θ) · d(bonds, angles, torsions)``

    so forward gives ``logdet = 2 Σ log b + Σ log sin θ`` over all ``n - 1`` bonds and ``n - 2``
    angles (frame included) and inverse its negative. A density ``q`` over internal coordinates
    then gives ``log_q(x) = log q(z) - logdet`` on Cartesian space modulo rigid motions (up to the
    constant ``-log(8π² V)``), which is what a rigid-invariant Boltzmann density needs for exact
    importance weights ``log_w = -u(x) - log_q(x)``. This is *not* the surface-volume factor
    ``½ log det(JᵀJ)`` of the canonical-frame embedding: the two differ by
    ``log(b₀² b₁ sin θ₀)`` of the frame coordinates (see ``docs/internal_coordinates.md``).

    A ring-closure row ``(i, j, m, k)`` places ``i`` from its bonds ``b = |x_i - x_j|`` and
    ``c = |x_i - x_m|`` and the dihedral about the chord ``j-m`` of length ``d``: it is the
    ordinary row ``(i, j, m, k)`` with ``cos θ = (b² + d² - c²) / (2 b d)``, and its volume
    element ``b² sin θ db dθ`` becomes ``(b c / d) db dc``, so the row contributes
    ``log b + log c - log d`` instead of ``2 log b + log sin θ``.

    The map is bijective for ``b > 0`` and ``0 < θ < π`` (closures: ``|b - c| < d < b + c``); the
    log-det uses ``|b|`` and ``|sin θ|`` so that a stray sample outside that range cannot produce
    NaN. A closure sample outside its triangle inequality has no preimage: ``forward`` places it
    on the chord's plane and returns ``logdet = -inf`` (so ``log_q = +inf`` and its importance
    weight is 0).

    Args:
        zmatrix: the molecule's :class:`~boltzflow.transforms.zmatrix.ZMatrix`.

    Example:
        >>> ic = InternalCoordinates(build_zmatrix(system.topology))  # doctest: +SKIP
        >>> z, logdet = ic.inverse(x)  # x: [B, n_atoms, 3] -> z: [B, 3 n_atoms - 6]
        >>> ic.split(z).torsions  # [B, n_atoms - 3]
    """

    def __init__(self, zmatrix: ZMatrix):
        super().__init__()
        self.zmatrix = zmatrix
        n = zmatrix.n_atoms
        self.n_atoms = n
        self.dim = 3 * n - 6
        rows = zmatrix.rows
        self.register_buffer("frame", rows[:3, 0].clone(), persistent=False)
        # Frame bond (a2 -> j2) and angle (a2-j2-k2) partners of the plane atom.
        self.register_buffer("frame_refs", rows[2, 1:3].clone(), persistent=False)
        self.register_buffer("rows", rows[3:].clone(), persistent=False)
        self.register_buffer("closing", zmatrix.closures[3:].clone(), persistent=False)
        # Rows grouped by generation: all references of a generation are placed earlier, so
        # one generation is placed in a single batched NeRF step (depth ≪ n_atoms).
        generation = {int(a): 0 for a in rows[:3, 0]}
        for atom, *refs in rows[3:].tolist():
            generation[atom] = 1 + max(generation[r] for r in refs)
        by_row = torch.tensor([generation[int(a)] for a in rows[3:, 0]], dtype=torch.long)
        self._n_generations = int(by_row.max()) if len(by_row) else 0
        closing = zmatrix.closures[3:]
        # Per generation, whether it places a ring-closing atom (a Python bool: no device sync
        # in the placement loop); and whether there are any closures at all.
        self._generation_closes = []
        for g in range(self._n_generations):
            index = torch.nonzero(by_row == g + 1)[:, 0]
            self.register_buffer(f"_generation_{g}", index, persistent=False)
            self._generation_closes.append(bool(closing[index].any()))
        self._has_closures = bool(closing.any())
        # +1: a2 is bonded to a0 (the angle opens from +x); -1: bonded to a1 (from -x).
        self._a2_direction = 1.0 if int(rows[2, 1]) == int(rows[0, 0]) else -1.0

    # -- layout ----------------------------------------------------------------------------

    @property
    def bond_indices(self) -> Tensor:
        """Positions ``[n_atoms - 1]`` of the bonds in the flat vector."""
        return torch.arange(0, self.n_atoms - 1)

    @property
    def angle_indices(self) -> Tensor:
        """Positions ``[n_atoms - 2]`` of the angles in the flat vector."""
        return torch.arange(self.n_atoms - 1, 2 * self.n_atoms - 3)

    @property
    def torsion_indices(self) -> Tensor:
        """Positions ``[n_atoms - 3]`` of the (periodic) torsions in the flat vector."""
        return torch.arange(2 * self.n_atoms - 3, self.dim)

    @property
    def closure_indices(self) -> Tensor:
        """Positions in the flat vector of the ring-closure rows' closing bonds (nm), which
        take those rows' angle slots."""
        return self.angle_indices[1:][self.closing.cpu()]

    @property
    def length_indices(self) -> Tensor:
        """Positions of every length (bonds and closing bonds), sorted."""
        return torch.cat([self.bond_indices, self.closure_indices]).sort().values

    @property
    def true_angle_indices(self) -> Tensor:
        """Positions of the angles proper (the angle slots that are not closing bonds)."""
        return torch.cat([self.angle_indices[:1], self.angle_indices[1:][~self.closing.cpu()]])

    def split(self, z: Tensor) -> ICs:
        """View the flat vector ``z: [B, 3 n_atoms - 6]`` as :class:`ICs`."""
        self._check_flat(z)
        n = self.n_atoms
        bonds, angles, torsions = z.split([n - 1, n - 2, n - 3], dim=-1)
        return ICs(bonds, angles, torsions)

    def ics(self, x: Tensor) -> ICs:
        """Internal coordinates of Cartesian ``x: [B, n_atoms, 3]``."""
        return self.split(self.inverse(x)[0])

    # -- maps --------------------------------------------------------------------------------

    def log_jacobian(self, z: Tensor, chords: Tensor | None = None) -> Tensor:
        """The forward logdet ``[B]`` of the flat vector ``z``: ``2 Σ log b + Σ log sin θ``,
        closure rows ``log b + log c - log d``.

        Args:
            z: flat internal coordinates ``[B, 3 n_atoms - 6]``.
            chords: ``[B, n_closures]`` chord lengths ``d = |x_j - x_m|`` of the closure rows
                (needed when the Z-matrix has any).
        """
        ics = self.split(z)
        b, slot = ics.bonds[:, 2:].abs(), ics.angles[:, 1:]
        rows = 2 * b.log() + slot.sin().abs().log()
        if chords is not None:
            c, closing = slot[:, self.closing].abs(), b[:, self.closing]
            rows = rows.masked_scatter(
                self.closing.expand_as(rows), closing.log() + c.log() - chords.log())
        frame = 2 * ics.bonds[:, :2].abs().log().sum(-1) + ics.angles[:, 0].sin().abs().log()
        return frame + rows.sum(-1)

    def _chords(self, x: Tensor) -> Tensor | None:
        """``[B, n_closures]`` chord lengths ``|x_j - x_m|`` of the closure rows (``None``
        without closures)."""
        if not self._has_closures:
            return None
        _, j, m, _ = self.rows[self.closing].unbind(-1)
        return (x[:, j] - x[:, m]).norm(dim=-1)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Internal ``z: [B, 3n - 6]`` -> Cartesian ``x: [B, n, 3]`` (canonical frame), logdet."""
        ics = self.split(z)
        batch = len(z)
        zero = z.new_zeros(batch)
        b0, b1, theta = ics.bonds[:, 0], ics.bonds[:, 1], ics.angles[:, 0]
        x_a1 = torch.stack([b0, zero, zero], -1)
        # a2 in the upper xy half-plane, at angle theta from the x axis seen from its partner.
        x_j2 = 0.0 if self._a2_direction > 0 else b0
        x_a2 = torch.stack(
            [x_j2 + self._a2_direction * b1 * theta.cos(), b1 * theta.sin(), zero], -1
        )
        x = z.new_zeros(batch, self.n_atoms, 3)
        x = x.index_copy(1, self.frame, torch.stack([x.new_zeros(batch, 3), x_a1, x_a2], 1))
        bonds, angles, torsions = ics.bonds[:, 2:], ics.angles[:, 1:], ics.torsions
        feasible = torch.ones(batch, dtype=torch.bool, device=z.device)
        for g in range(self._n_generations):
            index = getattr(self, f"_generation_{g}")
            atoms, j, k, t = self.rows[index].unbind(-1)
            angle = angles[:, index]
            if self._generation_closes[g]:  # closing bond c -> angle at j: c² = b² + d² - 2bd cos θ
                closing = self.closing[index]
                b, c = bonds[:, index], angle
                d = (x[:, j] - x[:, k]).norm(dim=-1)
                cos = (b * b + d * d - c * c) / (2 * b * d).clamp_min(_EPS)
                feasible &= ((cos.abs() < 1) | ~closing).all(-1)
                theta = torch.acos(cos.clamp(-1 + 1e-7, 1 - 1e-7))
                angle = torch.where(closing, theta, angle)
            placed = place_atom(x[:, j], x[:, k], x[:, t], bonds[:, index], angle, torsions[:, index])
            x = x.index_copy(1, atoms, placed)
        logdet = self.log_jacobian(z, self._chords(x))
        return x, torch.where(feasible, logdet, -math.inf)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Cartesian ``x: [B, n, 3]`` (any pose) -> internal ``z: [B, 3n - 6]``, logdet."""
        if x.dim() != 3 or x.shape[1:] != (self.n_atoms, 3):
            raise ValueError(
                f"x must have shape [batch, {self.n_atoms}, 3] (nm), got {list(x.shape)}"
            )
        a0, a1, a2 = (x[:, a] for a in self.frame)
        x_j2, x_k2 = x[:, self.frame_refs[0]], x[:, self.frame_refs[1]]
        atoms, j, k, t = self.rows.unbind(-1)
        x_i, x_j, x_k, x_t = x[:, atoms], x[:, j], x[:, k], x[:, t]
        bonds = torch.cat(
            [(a1 - a0).norm(dim=-1, keepdim=True), (a2 - x_j2).norm(dim=-1, keepdim=True),
             (x_i - x_j).norm(dim=-1)], -1,
        )  # fmt: skip
        slot = torch.where(self.closing, (x_i - x_k).norm(dim=-1), bond_angle(x_i, x_j, x_k))
        angles = torch.cat([bond_angle(a2, x_j2, x_k2).unsqueeze(-1), slot], -1)
        z = ICs(bonds, angles, dihedral(x_i, x_j, x_k, x_t)).flat()
        return z, -self.log_jacobian(z, self._chords(x))

    def _check_flat(self, z: Tensor) -> None:
        if z.dim() != 2 or z.shape[1] != self.dim:
            raise ValueError(
                f"internal coordinates must have shape [batch, 3 * {self.n_atoms} - 6 = "
                f"{self.dim}], got {list(z.shape)}"
            )
