"""Validity of generated molecules: Cα chirality and bond graph, the mirror fix, weight masking.

A generated configuration is *valid* when (1) every Cα has the chirality of the reference
(L-amino acids) and (2) the bond graph inferred from interatomic distances equals the
topology's bond graph. Invalid samples describe another molecule (a D-isomer, a broken or an
extra bond), so they are excluded from reweighted estimates: :func:`mask_invalid` sets their
log weight to ``-inf``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..systems.molecule import MolecularSystem

if TYPE_CHECKING:
    import mdtraj

#: Single-bond covalent radii in nm (Cordero et al., Dalton Trans. 2008; C is sp3).
COVALENT_RADII: dict[str, float] = {
    "H": 0.031, "C": 0.076, "N": 0.071, "O": 0.066, "F": 0.057, "P": 0.107, "S": 0.105,
    "Cl": 0.102, "Se": 0.120, "Br": 0.120, "I": 0.139,
}  # fmt: skip

#: Default factor on ``r_i + r_j`` below which two atoms count as bonded. Measured on 100 ps of
#: MD of aldp and of the dipeptides AK, CM, DR, WH: bonded pairs reach 1.13 (C-H at 0.121 nm),
#: non-bonded pairs come down to 1.37 (1-3 pairs in the His ring at 0.209 nm); 1.25 sits midway.
BOND_TOLERANCE = 1.25


def chirality_centers(topology: mdtraj.Topology) -> Tensor:
    """Atom indices ``[K, 4]`` ordered ``(CA, N, C, CB)`` of every residue that has all four.

    That is every standard amino acid but glycine (caps ACE/NME have no Cα).
    """
    rows = []
    for residue in topology.residues:
        names = {atom.name: atom.index for atom in residue.atoms}
        if all(n in names for n in ("CA", "N", "C", "CB")):
            rows.append([names["CA"], names["N"], names["C"], names["CB"]])
    return torch.tensor(rows, dtype=torch.long).reshape(-1, 4)


def chirality_signs(x: Tensor, centers: Tensor) -> Tensor:
    """Signs ``[B, K]`` of the signed volumes ``(N - CA) · ((C - CA) × (CB - CA))``.

    The volume is positive (+1) at the Cα of an L-amino acid, negative (-1) for the D-form
    (its mirror image); 0 means the four atoms are coplanar.

    Args:
        x: configurations ``[B, n_atoms, 3]`` in nm.
        centers: ``[K, 4]`` atom indices ``(CA, N, C, CB)`` from :func:`chirality_centers`.
    """
    if x.ndim != 3 or x.shape[-1] != 3:
        raise ValueError(f"x must have shape [B, n_atoms, 3], got {list(x.shape)}")
    ca, n, c, cb = x[:, centers.to(x.device)].unbind(-2)  # each [B, K, 3]
    volume = ((n - ca) * torch.linalg.cross(c - ca, cb - ca)).sum(-1)
    return torch.sign(volume)


def reference_chirality(system: MolecularSystem) -> Tensor:
    """Chirality signs ``[K]`` of the system's energy-minimized structure (+1 for L residues)."""
    ref = torch.as_tensor(system.positions, dtype=torch.float64)[None]
    return chirality_signs(ref, chirality_centers(system.topology))[0]


def chirality_ok(x: Tensor, system: MolecularSystem) -> Tensor:
    """``bool[B]``: every Cα of the sample has the reference chirality (True without any Cα)."""
    signs = chirality_signs(x, chirality_centers(system.topology))
    return (signs == reference_chirality(system).to(signs)).all(-1)


def _bond_errors(x: Tensor, system: MolecularSystem, tolerance: float) -> tuple[Tensor, Tensor]:
    """Per sample, topology bonds missing from and extra bonds present in the inferred graph."""
    top = system.topology
    n_atoms = top.n_atoms
    if x.ndim != 3 or x.shape[1:] != (n_atoms, 3):
        raise ValueError(f"x must have shape [B, {n_atoms}, 3], got {list(x.shape)}")
    radii = []
    for atom in top.atoms:
        symbol = atom.element.symbol if atom.element is not None else "?"
        if symbol not in COVALENT_RADII:
            raise ValueError(
                f"no covalent radius for element {symbol!r} (atom {atom}); add it to "
                "boltzflow.analysis.validity.COVALENT_RADII"
            )
        radii.append(COVALENT_RADII[symbol])
    r = torch.tensor(radii, dtype=torch.float64)
    threshold = tolerance * (r[:, None] + r[None, :])
    bonded = torch.zeros(n_atoms, n_atoms, dtype=torch.bool)
    pairs = torch.tensor([[b[0].index, b[1].index] for b in top.bonds], dtype=torch.long)
    if len(pairs):
        bonded[pairs[:, 0], pairs[:, 1]] = True
        bonded[pairs[:, 1], pairs[:, 0]] = True
    off_diagonal = ~torch.eye(n_atoms, dtype=torch.bool)
    broken, extra = [], []
    chunk = max(1, 2**22 // n_atoms**2)  # bounds the [chunk, n, n] distance matrices
    for xs in torch.split(x.detach().to("cpu", torch.float64), chunk):
        d = torch.cdist(xs, xs, compute_mode="donot_use_mm_for_euclid_dist")
        inferred = (d < threshold) & off_diagonal
        broken.append((bonded & ~inferred).sum((-1, -2)) // 2)
        extra.append((inferred & ~bonded).sum((-1, -2)) // 2)
    if not broken:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty
    return torch.cat(broken), torch.cat(extra)


def bond_graph_ok(x: Tensor, system: MolecularSystem, *, tolerance: float = BOND_TOLERANCE) -> Tensor:
    """``bool[B]``: the bond graph inferred from distances equals the topology's bond graph.

    Atoms ``i, j`` count as bonded when ``d_ij < tolerance · (r_i + r_j)`` with the covalent
    radii :data:`COVALENT_RADII` (the rule of RDKit's ``DetermineConnectivity``, whose factor
    is 1.3). So a sample fails if a topology bond is stretched beyond that threshold (with the
    default 1.25: C-C beyond 0.190 nm, C-H beyond 0.134 nm, ~24 % above equilibrium) or if two
    non-bonded atoms come closer than it (e.g. two overlapping atoms). No reference structure is
    needed; see :data:`BOND_TOLERANCE` for the margins measured on MD.

    Args:
        x: configurations ``[B, n_atoms, 3]`` in nm.
        system: a :class:`~boltzflow.systems.MolecularSystem` (topology with bonds and elements).
        tolerance: factor on the sum of covalent radii.
    """
    broken, extra = _bond_errors(x, system, tolerance)
    return (broken == 0) & (extra == 0)


@dataclass(frozen=True)
class ValidityReport:
    """Per-sample validity of generated molecules.

    Attributes:
        valid: ``bool[B]``, ``chirality_ok & bonds_ok``.
        chirality_ok: ``bool[B]``, every Cα has the reference chirality.
        bonds_ok: ``bool[B]``, inferred bond graph equals the topology's.
        n_broken_bonds: ``long[B]``, topology bonds longer than the bond threshold.
        n_extra_bonds: ``long[B]``, non-bonded pairs closer than the bond threshold.
    """

    valid: Tensor
    chirality_ok: Tensor
    bonds_ok: Tensor
    n_broken_bonds: Tensor
    n_extra_bonds: Tensor

    @property
    def n_valid(self) -> int:
        return int(self.valid.sum())

    @property
    def fraction_valid(self) -> float:
        return _fraction(self.valid)

    def summary(self) -> dict[str, float]:
        """Fractions of valid samples, for a metrics table."""
        return {
            "fraction_valid": self.fraction_valid,
            "fraction_chirality_ok": _fraction(self.chirality_ok),
            "fraction_bonds_ok": _fraction(self.bonds_ok),
        }


def _fraction(mask: Tensor) -> float:
    return float(mask.double().mean()) if mask.numel() else math.nan


def validity(x: Tensor, system: MolecularSystem, *, tolerance: float = BOND_TOLERANCE) -> ValidityReport:
    """Chirality and bond-graph checks of samples ``x: [B, n_atoms, 3]`` (nm) of ``system``."""
    chiral = chirality_ok(x, system).cpu()
    broken, extra = _bond_errors(x, system, tolerance)
    bonds = (broken == 0) & (extra == 0)
    return ValidityReport(
        valid=chiral & bonds,
        chirality_ok=chiral,
        bonds_ok=bonds,
        n_broken_bonds=broken,
        n_extra_bonds=extra,
    )


@dataclass(frozen=True)
class MirrorFix:
    """Result of :func:`fix_chirality_by_mirroring`.

    Attributes:
        x: configurations ``[B, n_atoms, 3]`` with the mirrored ones replaced by ``-x``.
        mirrored: ``bool[B]``, which samples were mirrored.
    """

    x: Tensor
    mirrored: Tensor

    @property
    def n_fixed(self) -> int:
        return int(self.mirrored.sum())


def fix_chirality_by_mirroring(x: Tensor, system: MolecularSystem) -> MirrorFix:
    """Mirror (``x → -x``) samples whose Cα chiralities are *all* inverted (the D-form).

    The transferable Boltzmann generator's fix (Klein & Noé 2024): an E(3)-equivariant flow
    cannot tell a molecule from its mirror image and generates both. The Amber energy is
    invariant under reflection (distances and angles are, and every torsion term has phase 0
    or π), and so is the density of an E(3)-invariant model, so ``u`` and ``log_q`` — hence
    ``log_w`` — are unchanged by the fix. For a model that is not reflection-invariant,
    recompute ``log_q``. Samples with mixed chiralities cannot be fixed and stay invalid.

    Args:
        x: configurations ``[B, n_atoms, 3]`` in nm.
        system: the :class:`~boltzflow.systems.MolecularSystem` they belong to.
    """
    centers = chirality_centers(system.topology)
    if len(centers) == 0:
        return MirrorFix(x=x, mirrored=torch.zeros(len(x), dtype=torch.bool, device=x.device))
    signs = chirality_signs(x, centers)
    mirrored = (signs == -reference_chirality(system).to(signs)).all(-1)
    return MirrorFix(x=torch.where(mirrored[:, None, None], -x, x), mirrored=mirrored)


def mask_invalid(log_w: Tensor, valid: Tensor) -> Tensor:
    """Log weights ``[B]`` with invalid samples set to ``-inf`` (zero weight in every estimate).

    ESS, free energies, profiles and reweighted W2 distances then see only valid molecules;
    report the fraction of valid samples next to them.
    """
    if log_w.shape != valid.shape:
        raise ValueError(
            f"log_w and valid must have the same shape, got {list(log_w.shape)} and "
            f"{list(valid.shape)}"
        )
    return torch.where(valid.to(log_w.device), log_w, torch.full_like(log_w, -math.inf))
