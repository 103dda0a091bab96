"""The "TBG + full" per-atom encoding of peptides and the padded batch context of a field.

A description of a molecule's chemistry, shared by every model that is conditioned on it (the
transferable CNF's :class:`~boltzflow.continuous.PeptideEGNN`, a transferable flow on internal
coordinates). Topologies are mdtraj objects passed in; nothing here imports mdtraj or OpenMM.

Every atom gets five integer tokens (Klein & Noé, *Transferable Boltzmann Generators*, 2024):

=============  ==============================================================================
``element``    H, C, N, O, S
``atom``       the heavy atom's PDB name within its residue (``CA``, ``CB``, ``OD1``, …), or
               ``H@<heavy>`` for a hydrogen, named by the heavy atom it is bonded to (``HB2``
               and ``HB3`` on ``CB`` are both ``H@CB``)
``residue``    the amino acid (20 standard ones; protonation variants such as HID map to HIS)
``position``   the residue's index in the chain (0, 1, … < ``max_residues``)
``terminal``   0 interior, 1 N-terminal, 2 C-terminal, 3 both (a single residue)
=============  ==============================================================================

So two atoms of one molecule have equal encodings exactly when they are hydrogens on the same
heavy atom: the chemically equivalent atoms a force field is invariant to exchanging. The
integer *permutation group* of each atom (:func:`~boltzflow.continuous.atom_types_from_topology`,
scheme ``"equivalent"``) is kept alongside for the equivariant-OT pairing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..errors import BoltzflowError

__all__ = [
    "FEATURES",
    "MAX_HOPS",
    "MoleculeEncoding",
    "PeptideContext",
    "Vocabulary",
    "encode_topology",
]

#: Token columns of an encoding, in order.
FEATURES = ("element", "atom", "residue", "position", "terminal")
#: Covalent-graph distances told apart by the optional bond-graph edge feature (1-2, 1-3, 1-4).
MAX_HOPS = 3

ELEMENTS = ("H", "C", "N", "O", "S")
AMINO_ACIDS = (
    "ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "GLY", "HIS", "ILE",
    "LEU", "LYS", "MET", "PHE", "PRO", "SER", "THR", "TRP", "TYR", "VAL",
)  # fmt: skip
#: Heavy-atom names of the 20 amino acids with charged termini (amber14 residue templates).
HEAVY_ATOMS = (
    "N", "CA", "C", "O", "OXT", "CB", "CG", "CG1", "CG2", "CD", "CD1", "CD2", "CE", "CE1",
    "CE2", "CE3", "CZ", "CZ2", "CZ3", "CH2", "ND1", "ND2", "NE", "NE1", "NE2", "NH1", "NH2",
    "NZ", "OD1", "OD2", "OE1", "OE2", "OG", "OG1", "OH", "SD", "SG",
)  # fmt: skip
#: Residue names of protonation variants, with the amino acid they encode as.
VARIANTS = {
    "HID": "HIS", "HIE": "HIS", "HIP": "HIS", "CYX": "CYS", "CYM": "CYS", "ASH": "ASP",
    "GLH": "GLU", "LYN": "LYS",
}  # fmt: skip
TERMINALS = ("interior", "N-terminal", "C-terminal", "N- and C-terminal")


@dataclass(frozen=True)
class Vocabulary:
    """The token lists of each feature; their sizes fix the field's embedding tables.

    Stored in a checkpoint (:meth:`to_dict`), so a trained model encodes new molecules exactly
    as it encoded its training set.
    """

    elements: tuple[str, ...] = ELEMENTS
    atoms: tuple[str, ...] = HEAVY_ATOMS + tuple(f"H@{a}" for a in HEAVY_ATOMS)
    residues: tuple[str, ...] = AMINO_ACIDS
    max_residues: int = 2

    @property
    def sizes(self) -> dict[str, int]:
        """Number of tokens per feature (``FEATURES`` order)."""
        return {
            "element": len(self.elements),
            "atom": len(self.atoms),
            "residue": len(self.residues),
            "position": self.max_residues,
            "terminal": len(TERMINALS),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "elements": list(self.elements),
            "atoms": list(self.atoms),
            "residues": list(self.residues),
            "max_residues": self.max_residues,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Vocabulary:
        return cls(
            elements=tuple(data["elements"]),
            atoms=tuple(data["atoms"]),
            residues=tuple(data["residues"]),
            max_residues=int(data["max_residues"]),
        )


@dataclass(frozen=True)
class MoleculeEncoding:
    """The encoding of one molecule.

    Attributes:
        tokens: ``[N, 5]`` int64, one column per entry of :data:`FEATURES`.
        groups: ``[N]`` int64 permutation group (equal only for hydrogens on one heavy atom).
        label: a name for messages (e.g. the sequence).
        hops: ``[N, N]`` int64 covalent-graph distance of each pair, capped at
            :data:`MAX_HOPS` + 1 (0 on the diagonal); used only by a field built with
            ``bond_graph=True`` (an extension of the "TBG + full" encoding).
    """

    tokens: Tensor
    groups: Tensor
    label: str = ""
    hops: Tensor | None = None

    @property
    def n_atoms(self) -> int:
        return int(self.tokens.shape[0])

    def context(self) -> PeptideContext:
        """The context of this molecule alone (no padding)."""
        return PeptideContext(self.tokens, self.groups, hops=self.hops)


def _lookup(table: tuple[str, ...], value: str, what: str, atom) -> int:
    try:
        return table.index(value)
    except ValueError:
        raise BoltzflowError(
            f"{what} {value!r} of atom {atom} is not in the transferable model's vocabulary "
            f"({len(table)} {what}s: {', '.join(table[:12])}{', …' if len(table) > 12 else ''}); "
            "the model covers peptides of the 20 standard amino acids with charged termini"
        ) from None


def encode_topology(topology, vocabulary: Vocabulary | None = None, *, label: str = "") -> MoleculeEncoding:
    """Tokens and permutation groups of every atom of an mdtraj ``Topology``.

    Raises:
        BoltzflowError: an element, atom name, residue or chain position outside ``vocabulary``
            (e.g. a capped peptide's ACE, or a longer chain than the model was built for).
    """
    from ..continuous.field import atom_types_from_topology

    vocab = vocabulary or Vocabulary()
    residues = list(topology.residues)
    if len(residues) > vocab.max_residues:
        raise BoltzflowError(
            f"{label or 'the molecule'} has {len(residues)} residues; this transferable model "
            f"encodes chain positions up to {vocab.max_residues}"
        )
    heavy_of: dict[int, Any] = {}
    for a, b in topology.bonds:
        for h, other in ((a, b), (b, a)):
            if h.element.symbol == "H" and other.element.symbol != "H":
                heavy_of[h.index] = other
    rows = []
    first, last = residues[0].index, residues[-1].index
    for atom in topology.atoms:
        symbol = atom.element.symbol if atom.element is not None else "?"
        if symbol == "H":
            if atom.index not in heavy_of:
                raise BoltzflowError(f"hydrogen {atom} is bonded to no heavy atom; cannot encode it")
            name = f"H@{heavy_of[atom.index].name}"
        else:
            name = atom.name
        res = atom.residue
        resname = VARIANTS.get(res.name, res.name)
        position = [r.index for r in residues].index(res.index)
        terminal = (res.index == first) + 2 * (res.index == last)
        residue = _lookup(vocab.residues, resname, "residue", atom)  # the most telling error
        element = _lookup(vocab.elements, symbol, "element", atom)
        rows.append([element, _lookup(vocab.atoms, name, "atom name", atom), residue, position,
                     terminal])
    tokens = torch.tensor(rows, dtype=torch.long).reshape(-1, len(FEATURES))
    groups = atom_types_from_topology(topology, scheme="equivalent").atom_types
    return MoleculeEncoding(tokens, groups, label, covalent_hops(topology))


def covalent_hops(topology, max_hops: int = MAX_HOPS) -> Tensor:
    """Covalent-graph distances ``[N, N]`` (bonds between each pair of atoms of an mdtraj
    ``topology``), capped at ``max_hops + 1`` (breadth-first, by powers of the adjacency)."""
    n = topology.n_atoms
    adjacency = torch.zeros(n, n, dtype=torch.bool)
    for a, b in topology.bonds:
        adjacency[a.index, b.index] = adjacency[b.index, a.index] = True
    hops = torch.full((n, n), max_hops + 1, dtype=torch.long)
    hops.fill_diagonal_(0)
    reach = torch.eye(n, dtype=torch.bool)
    for k in range(1, max_hops + 1):
        reach_next = reach | ((reach.float() @ adjacency.float()) > 0)
        hops[reach_next & ~reach] = k
        reach = reach_next
    return hops


@dataclass(frozen=True, eq=False)
class PeptideContext:
    """What a :class:`~boltzflow.continuous.PeptideEGNN` needs besides positions.

    One molecule: ``tokens [N, 5]``, ``groups [N]``, ``mask None``. A padded batch of molecules
    (:meth:`pad`): ``tokens [B, Nmax, 5]``, ``groups [B, Nmax]`` (``-1`` on padding) and
    ``mask [B, Nmax]`` (True on real atoms).

    ``atom_types`` (the groups) and ``to`` make it usable wherever a
    :class:`~boltzflow.continuous.ParticleContext` is (``ContinuousFlow``,
    ``boltzflow.testing.assert_equivariant``).
    """

    tokens: Tensor
    groups: Tensor
    mask: Tensor | None = None
    n_real: Tensor | None = field(default=None, repr=False)  # [B] atoms per molecule
    hops: Tensor | None = field(default=None, repr=False)  # [N, N] or [B, N, N] graph distance

    def __post_init__(self) -> None:
        if self.tokens.dtype != torch.long or self.tokens.shape[-1] != len(FEATURES):
            raise ValueError(f"tokens must be int64 [..., N, {len(FEATURES)}]")
        if self.mask is not None and self.mask.shape != self.tokens.shape[:-1]:
            raise ValueError("mask must be [B, N] like tokens[..., 0]")
        if self.mask is not None and self.n_real is None:
            object.__setattr__(self, "n_real", self.mask.sum(-1))

    @property
    def atom_types(self) -> Tensor:
        return self.groups

    @property
    def n_types(self) -> int:
        return int(self.groups.max()) + 1 if self.groups.numel() else 0

    @property
    def n_atoms(self) -> int:
        """``N`` (``Nmax`` for a padded batch)."""
        return int(self.tokens.shape[-2])

    def to(self, device: torch.device | str) -> PeptideContext:
        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device)

        return PeptideContext(
            self.tokens.to(device), self.groups.to(device), move(self.mask), move(self.n_real),
            move(self.hops),
        )

    @classmethod
    def pad(cls, encodings: list[MoleculeEncoding], n_max: int | None = None) -> PeptideContext:
        """The padded batch of ``encodings`` (one row each) to ``n_max`` atoms (default: largest)."""
        if not encodings:
            raise ValueError("need at least one molecule")
        n_max = max(e.n_atoms for e in encodings) if n_max is None else n_max
        b = len(encodings)
        tokens = torch.zeros(b, n_max, len(FEATURES), dtype=torch.long)
        groups = torch.full((b, n_max), -1, dtype=torch.long)
        mask = torch.zeros(b, n_max, dtype=torch.bool)
        with_hops = all(e.hops is not None for e in encodings)
        hops = torch.zeros(b, n_max, n_max, dtype=torch.long) if with_hops else None
        for i, e in enumerate(encodings):
            if e.n_atoms > n_max:
                raise ValueError(f"molecule {e.label!r} has {e.n_atoms} atoms > n_max={n_max}")
            tokens[i, : e.n_atoms] = e.tokens
            groups[i, : e.n_atoms] = e.groups
            mask[i, : e.n_atoms] = True
            if hops is not None:
                hops[i, : e.n_atoms, : e.n_atoms] = e.hops
        return cls(tokens, groups, mask, hops=hops)
