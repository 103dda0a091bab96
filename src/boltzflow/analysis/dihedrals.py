"""Backbone dihedrals φ/ψ of peptides, computed in torch (vectorized and differentiable).

mdtraj (imported lazily) only finds the atom quadruples; the angles themselves follow mdtraj's
sign convention (IUPAC: looking along the central bond, positive is clockwise), so
``dihedral_angles`` agrees with ``mdtraj.compute_phi`` / ``compute_psi``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..systems.molecule import MolecularSystem

if TYPE_CHECKING:
    import mdtraj


def backbone_dihedral_indices(topology: mdtraj.Topology) -> dict[str, Tensor]:
    """Atom quadruples of the backbone dihedrals of a peptide topology.

    φ of residue i is ``C(i-1)-N(i)-CA(i)-C(i)``, ψ of residue i is ``N(i)-CA(i)-C(i)-N(i+1)``
    (mdtraj's definitions). An uncapped dipeptide X-Y has one φ (residue Y) and one ψ
    (residue X); ACE-X-NME has the φ and ψ of X.

    Args:
        topology: an mdtraj ``Topology``.

    Returns:
        ``{"phi": LongTensor[K_phi, 4], "psi": LongTensor[K_psi, 4]}`` in chain order.
    """
    import mdtraj
    import numpy as np

    traj = mdtraj.Trajectory(np.zeros((1, topology.n_atoms, 3), np.float32), topology)
    phi, _ = mdtraj.compute_phi(traj)
    psi, _ = mdtraj.compute_psi(traj)
    return {
        "phi": torch.as_tensor(np.asarray(phi, np.int64).reshape(-1, 4)),
        "psi": torch.as_tensor(np.asarray(psi, np.int64).reshape(-1, 4)),
    }


def dihedral_angles(x: Tensor, indices: Tensor) -> Tensor:
    """Dihedral angles ``[B, K]`` in radians, in ``(-π, π]``, of atom quadruples ``[K, 4]``.

    Uses the ``atan2`` form (Blondel & Karplus 1996), which is well conditioned at every angle
    and differentiable except where three of the four atoms are collinear.

    Args:
        x: configurations ``[B, n_atoms, 3]`` (nm; any length unit works).
        indices: atom indices ``[K, 4]`` (e.g. from :func:`backbone_dihedral_indices`).

    Example:
        >>> x = torch.tensor([[[1.0, 0, 0], [0, 0, 0], [0, 1, 0], [0, 1, -1]]])
        >>> dihedral_angles(x, torch.tensor([[0, 1, 2, 3]]))  # 90 degrees
        tensor([[1.5708]])
    """
    if x.ndim != 3 or x.shape[-1] != 3:
        raise ValueError(f"x must have shape [B, n_atoms, 3], got {list(x.shape)}")
    indices = torch.as_tensor(indices, dtype=torch.long, device=x.device)
    if indices.ndim != 2 or indices.shape[-1] != 4:
        raise ValueError(f"indices must have shape [K, 4], got {list(indices.shape)}")
    p0, p1, p2, p3 = x[:, indices].unbind(-2)  # each [B, K, 3]
    b1, b2, b3 = p1 - p0, p2 - p1, p3 - p2
    n1 = torch.linalg.cross(b1, b2)
    n2 = torch.linalg.cross(b2, b3)
    y = (b1 * n2).sum(-1) * torch.linalg.vector_norm(b2, dim=-1)
    return torch.atan2(y, (n1 * n2).sum(-1))


def ramachandran_angles(
    system: MolecularSystem, x: Tensor, *, index: int = 0
) -> tuple[Tensor, Tensor]:
    """The Ramachandran pair ``(phi [B], psi [B])`` in radians of a peptide system.

    The pair is the ``index``-th φ and the ``index``-th ψ of :func:`backbone_dihedral_indices`
    (default: the first of each). For ACE-X-NME that is φ and ψ of X; for an uncapped dipeptide
    X-Y it is φ of Y and ψ of X, the two torsions flanking the single peptide bond — the pair
    plotted for dipeptides in the transferable Boltzmann generator literature. For longer
    peptides call :func:`dihedral_angles` with all indices.

    Args:
        system: a :class:`~boltzflow.systems.MolecularSystem` (needs ``topology``).
        x: configurations ``[B, n_atoms, 3]`` in nm.
        index: which φ/ψ pair, counted along the chain.
    """
    if not isinstance(system, MolecularSystem):
        raise TypeError(f"ramachandran_angles needs a MolecularSystem, got {type(system).__name__}")
    idx = backbone_dihedral_indices(system.topology)
    for name, quads in idx.items():
        if not -len(quads) <= index < len(quads):
            raise ValueError(
                f"system {system.id!r} has {len(quads)} {name} dihedral(s); "
                f"index {index} is out of range"
            )
    quads = torch.stack([idx["phi"][index], idx["psi"][index]])
    angles = dihedral_angles(x, quads)
    return angles[:, 0], angles[:, 1]
