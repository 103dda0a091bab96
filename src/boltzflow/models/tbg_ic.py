"""``tbg-ic``: a transferable Boltzmann generator in internal coordinates.

One normalizing flow over the bond lengths, angles and torsions of *any* peptide, conditioned on
its chemistry, trained by maximum likelihood on many peptides and sampled zero-shot on peptides
it never saw — with an exact ``log q`` (and its gradient) in one network pass per layer.

* **Coordinates.** :func:`peptide_zmatrix`: the main chain (caps, N-Cα-C of every residue) is the
  Z-matrix spine, the rest is reached breadth-first in a chemistry order (residue, then heavy
  atoms by standard name, then hydrogens on their heavy atom), so the same group gets the same
  references in every peptide. Each Z-matrix row ``r`` holds up to three coordinates
  ``(bond, angle, torsion)``: a ``[R, 3]`` table with a mask of the entries that exist (the
  frame rows have fewer).
* **Normalization** per chemistry: the mean and spread of every bond, angle and rigid torsion,
  keyed by the residue and atom names involved (``ALA:CA-CB``), fitted on the training frames and
  stored in the checkpoint; unseen chemistry falls back to the element key (``C-C``), then to the
  coordinate type. Free torsions are only shifted by their circular mean.
* **Flow.** Coupling layers over the table; each transforms one group of entries (torsions or
  bonds/angles, of even or odd rows) with monotone splines (bonds, angles, rigid torsions) or
  circular splines (free torsions), conditioned by a transformer over the rows: one token per row
  from the encodings of the atom and its three references, the values of the entries it may
  see, and an attention bias learned per covalent-graph distance between the rows' atoms.
  Padding rows are masked out of attention and out of every sum, so they never change a real row.
* **Likelihood.** ``log q(x) = log p₀(z) + Σ logdet(layers) + logdet(normalization) +
  logdet(internal → Cartesian)``; training needs only the first two (the others do not depend on
  the parameters).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..config import RunConfig, Section, check
from ..distributions.torus import ProductBase
from ..errors import BoltzflowError
from ..flow import Flow
from ..systems.base import System
from ..systems.encoding import (
    AMINO_ACIDS,
    FEATURES,
    HEAVY_ATOMS,
    MAX_HOPS,
    MoleculeEncoding,
    Vocabulary,
    encode_topology,
)
from ..systems.molecule import MolecularSystem
from ..training import distributed
from ..transforms.base import Bijection, Chain
from ..transforms.bounds import TailBound
from ..transforms.builders import torsion_codes
from ..transforms.ic_normalization import ICNormalization, rigid_torsions
from ..transforms.internal import InternalCoordinates
from ..transforms.splines import circular_rational_quadratic_spline, rational_quadratic_spline
from ..transforms.zmatrix import ZMatrix, zmatrix_from_graph
from .base import ModelKind, TrainingSet, check_whole_molecules

__all__ = ["ICVocabulary", "RowContext", "RowFlow", "TBGICKind", "TBGICParams",
           "peptide_zmatrix"]

#: Capping groups the model encodes besides the 20 amino acids.
CAPS = ("ACE", "NME")
#: Main-chain atoms in order, per residue name (default: N, CA, C).
SPINE = {"ACE": ("CH3", "C"), "NME": ("N", "C")}
#: Coordinate columns of a row.
BOND, ANGLE, TORSION = 0, 1, 2
#: Spreads used for chemistry never seen and single frames (nm, rad), per coordinate type:
#: bond, angle, ring-closing bond (in a closure row's angle slot), torsion.
DEFAULT_STD = {"b": 0.003, "a": 0.06, "c": 0.003, "t": 0.1}
#: Layout of new models (checkpoint metadata; models trained before have neither).
#: ``key_version`` 2: prochiral hydrogens keyed by geometry, residue-relative fallback keys
#: (:func:`_chemistry_keys_v2`); 3: also the dipeptide-analog key of middle residues and caps,
#: and signed element keys for rigid hydrogen torsions; 4: a rigid hydrogen torsion within
#: :data:`PLANAR` of 0 or ±π (aromatic and amide hydrogens) is keyed ``:0``/``:pi`` instead of
#: by its sign, which at ±π is a coin toss between the first MD frame (the statistics) and the
#: built structure (sampling): 59 coordinates of 29 of 40 training peptides flipped, and Trp's
#: HH2 fell back to a key 0.8 rad off (``bench/tbg_ic_keys.py``, docs/benchmarks.md).
LAYOUT = {"ring_closures": True, "tail_bound": 10.0, "hydrogen_names": True, "key_version": 4,
          "torsion_bound": True, "torsion_codes": True}
#: Key version 4: a rigid hydrogen torsion this close to 0 or ±π (rad) is planar, not signed.
#: MD moves such torsions by 0.13-0.21 rad (sd); a methylene hydrogen's sits near ±2.1.
PLANAR = math.pi / 4
#: With ``torsion_bound``, a rigid torsion stays within this fraction of π of its mean: beyond
#: π the normalization's wrap would map two latent values onto one torsion (``log q`` of such a
#: sample, evaluated back, differed by 2-7 nats), so the map is a bijection only inside.
WRAP_MARGIN = 0.999
#: Main-chain atom names: in the residue-relative keys their residue is ``*`` (any residue but
#: the ones in :data:`OWN_BACKBONE`, whose main chain differs).
BACKBONE = frozenset({"N", "CA", "C", "O", "OXT", "H", "HA", "HT"})
OWN_BACKBONE = frozenset({"PRO", "GLY", *CAPS})
#: The last relative key: Pro and Gly main chains as any other.
CAPS_ONLY = frozenset(CAPS)
#: Cap atoms that play a main-chain atom in the dipeptide-analog key (key version 3): ACE's
#: carbonyl is a residue's C and O, the caps' methyl carbons are Cα, NME's amide is N and H.
CAP_ANALOGS = {("ACE", "C"): "C", ("ACE", "O"): "O", ("ACE", "CH3"): "CA",
               ("NME", "N"): "N", ("NME", "H"): "H", ("NME", "C"): "CA"}


def ic_vocabulary() -> Vocabulary:
    """The vocabulary of ``tbg-ic``: the amino acids and ACE/NME caps, up to 8 residues."""
    heavy = (*HEAVY_ATOMS, "CH3")
    return Vocabulary(atoms=heavy + tuple(f"H@{a}" for a in heavy),
                      residues=AMINO_ACIDS + CAPS, max_residues=8)


ICVocabulary = ic_vocabulary


@dataclass
class TBGICParams(Section):
    """The internal-coordinate transferable BG's section.

    Attributes:
        hidden: width of the row tokens and the transformer.
        n_layers: coupling layers (every four transform each entry once).
        attention_layers: transformer blocks in each layer's conditioner.
        heads: attention heads.
        n_bins: spline bins.
        bound: interval splines act on ``[-bound, bound]`` (normalized units).
        frames_per_peptide: MD frames per peptide in one batch (``train.batch_size`` frames in
            all).
        w_kl: weight of the reverse KL on the training peptides' energies (0: likelihood only).
        kl_start: first step of the reverse KL.
        kl_peptides: peptides of each step's batch whose own samples enter the reverse KL.
        kl_samples: model samples per such peptide.
        u_high: energies above this (kT) are softened logarithmically in the KL term.
        w_lv: weight of the variance of ``log q + u`` over each peptide's frames of the batch
            (:func:`~boltzflow.training.log_weight_variance`, with the energies the dataset
            stores), from ``kl_start`` on.
    """

    NAME = "tbg-ic"
    hidden: int = 64
    n_layers: int = 8
    attention_layers: int = 2
    heads: int = 4
    n_bins: int = 8
    bound: float = 5.0
    frames_per_peptide: int = 8
    w_kl: float = 0.0
    kl_start: int = 0
    kl_peptides: int = 4
    kl_samples: int = 16
    u_high: float = 1000.0
    w_lv: float = 0.0

    def validate(self) -> None:
        """Ranges; the width must split over the heads."""
        self.positive("hidden", "n_layers", "attention_layers", "heads", "n_bins", "bound",
                      "frames_per_peptide", "kl_peptides", "kl_samples", "u_high")
        self.non_negative("w_kl", "kl_start", "w_lv")
        check(self.w_lv == 0 or self.frames_per_peptide >= 2, "tbg-ic.frames_per_peptide",
              ">= 2 when w_lv > 0 (a variance over one frame is 0)", self.frames_per_peptide)
        check(self.hidden % self.heads == 0, "tbg-ic.hidden", "a multiple of tbg-ic.heads",
              self.hidden)


# ------------------------------------------------------------------------------------------
# the molecule: Z-matrix, row table, chemistry keys


def peptide_zmatrix(topology: Any, ring_closures: bool = True,
                    frame_at_start: bool = False) -> ZMatrix:
    """A Z-matrix with the main chain as spine and a chemistry order for everything else;
    each ring's closing bond a coordinate (``ring_closures``).

    The frame sits in the middle of the main chain, or (``frame_at_start``, key version 3) on
    the first residue's carbonyl C (ACE's when capped), its Cα (ACE's methyl) and the next N:
    every residue after the first is then built from its N onwards, as a dipeptide's second
    residue is, whatever the length, and the first as a dipeptide's first. (For an uncapped
    dipeptide both frames are the same; from the middle, a tripeptide's first residue was built
    backwards from the second, by references no dipeptide has.)"""
    atoms = list(topology.atoms)
    spine, start = [], None
    for res in topology.residues:
        names = {a.name: a.index for a in res.atoms}
        spine += [names[n] for n in SPINE.get(res.name, ("N", "CA", "C")) if n in names]
        if start is None and "C" in names and names["C"] in spine:
            start = spine.index(names["C"])
    heavy_rank = {n: i for i, n in enumerate((*HEAVY_ATOMS, "CH3"))}
    priority = sorted(range(len(atoms)), key=lambda i: (
        atoms[i].residue.index, atoms[i].element.symbol == "H",
        heavy_rank.get(atoms[i].name, len(heavy_rank)), atoms[i].name))
    rank = {atom: r for r, atom in enumerate(priority)}
    bonds = [(a.index, b.index) for a, b in topology.bonds]
    hydrogen = [a.element.symbol == "H" for a in atoms]
    return zmatrix_from_graph(len(atoms), bonds, hydrogen, spine=spine,
                              priority=[rank[i] for i in range(len(atoms))],
                              ring_closures=ring_closures,
                              frame=start if frame_at_start else None)


@dataclass
class Molecule:
    """One molecule as the flow sees it.

    Attributes:
        label: a name for messages.
        ic: its internal coordinates (Z-matrix order).
        tokens: ``[R, 4, 5]`` encodings of each row's atom and its references (``-1``: none).
        entries: ``[R, 3]`` which coordinates exist (bond, angle, torsion).
        circular: ``[R, 3]`` the free (periodic) torsions.
        hops: ``[R, R]`` covalent-graph distance between the rows' atoms.
        keys: per flat coordinate, its chemistry keys, most specific first, the coordinate
            type last (``(exact, element, type)``; key version 2 adds a residue-relative key).
        codes: ``[R]`` two-bit codes of the rows' torsions that choose the torsion layers'
            groups with ``torsion_codes`` (:data:`LAYOUT`): free torsions
            :func:`~boltzflow.transforms.torsion_codes` of their axes, so neighbouring ones
            condition on each other; the others by row parity (``0`` or ``3``).
    """

    label: str
    ic: InternalCoordinates
    tokens: Tensor
    entries: Tensor
    circular: Tensor
    hops: Tensor
    keys: list[tuple[str, ...]]
    codes: Tensor | None = None

    def __post_init__(self) -> None:
        if self.codes is None:
            self.codes = 3 * (torch.arange(self.ic.n_atoms) % 2)

    @property
    def n_rows(self) -> int:
        """Rows = atoms."""
        return self.ic.n_atoms

    def table(self, flat: Tensor) -> Tensor:
        """Flat internal coordinates ``[B, 3R − 6]`` as the table ``[B, R, 3]`` (0 where absent)."""
        out = flat.new_zeros(len(flat), self.n_rows * 3)
        out[:, self.flat_to_table] = flat
        return out.view(len(flat), self.n_rows, 3)

    def flat(self, table: Tensor) -> Tensor:
        """The table ``[B, R, 3]`` back to flat ``[B, 3R − 6]``."""
        return table.reshape(len(table), -1)[:, self.flat_to_table]

    @cached_property
    def flat_to_table(self) -> Tensor:
        """Position in the flattened table of each flat coordinate."""
        n = self.n_rows
        rows = [*range(1, n), *range(2, n), *range(3, n)]
        cols = [BOND] * (n - 1) + [ANGLE] * (n - 2) + [TORSION] * (n - 3)
        return torch.tensor([3 * r + c for r, c in zip(rows, cols)], dtype=torch.long)


def describe_molecule(topology: Any, vocabulary: Vocabulary, label: str,
                      ring_closures: bool = True, hydrogen_names: bool = True,
                      key_version: int = 1, positions: Tensor | None = None) -> Molecule:
    """The :class:`Molecule` of an mdtraj topology (raises for chemistry outside the vocabulary,
    naming the atom); ``ring_closures``, ``hydrogen_names`` and ``key_version`` as in
    :data:`LAYOUT`; ``positions`` (``[n_atoms, 3]``, any configuration of the molecule) tell
    the prochiral hydrogens apart in key version 2."""
    encoding: MoleculeEncoding = encode_topology(topology, vocabulary, label=label)
    zmatrix = peptide_zmatrix(topology, ring_closures, frame_at_start=key_version >= 3)
    ic = InternalCoordinates(zmatrix)
    rows = zmatrix.rows
    n = len(rows)
    pad = torch.full((1, len(FEATURES)), -1, dtype=torch.long)
    padded = torch.cat([encoding.tokens, pad])  # index -1 → the pad row
    tokens = padded[rows.clamp(min=-1)]  # [R, 4, 5]
    entries = torch.zeros(n, 3, dtype=torch.bool)
    entries[1:, BOND], entries[2:, ANGLE], entries[3:, TORSION] = True, True, True
    circular = torch.zeros(n, 3, dtype=torch.bool)
    circular[3:, TORSION] = ~rigid_torsions(ic, topology, rings=ring_closures)
    hops = encoding.hops[rows[:, 0]][:, rows[:, 0]]
    if key_version >= 2:
        if positions is None:
            raise ValueError("key version 2 needs the molecule's positions (prochiral hydrogens)")
        flat = ic.inverse(torch.as_tensor(positions, dtype=torch.float64)[None])[0][0]
        keys = _chemistry_keys_v2(topology, rows, zmatrix.closures, circular[3:, TORSION],
                                  flat[ic.torsion_indices], analogs=key_version >= 3,
                                  planar=key_version >= 4)
    else:
        keys = _chemistry_keys(topology, rows, zmatrix.closures, hydrogen_names)
    mol = Molecule(label, ic, tokens, entries, circular, hops.clamp(max=MAX_HOPS + 1), keys)
    free = torch.nonzero(circular[:, TORSION])[:, 0]
    if len(free):
        mol.codes[free] = torch.tensor(torsion_codes(rows[free, 1:3].tolist(), encoding.hops))
    return mol


def _chemistry_keys(topology: Any, rows: Tensor, closures: Tensor, hydrogen_names: bool = True
                    ) -> list[tuple[str, str, str]]:
    """Per flat coordinate: ``(exact, element, type)`` keys of its normalization (type ``b``
    bond, ``a`` angle, ``c`` ring-closing bond, ``t`` torsion; a closing bond's element key is
    the bond's, ``b:C-N``, so unseen ring chemistry falls back to ordinary bonds). With
    ``hydrogen_names`` the exact keys name hydrogens (``ASN:HB2``, ``ASN:HB3``): pooled as
    ``ASN:H``, the two methylene hydrogens' torsions (+120° and −120° from the same partner) made
    one bimodal key with a 1 rad spread, and the flow put the two hydrogens onto each other."""
    atoms = list(topology.atoms)

    def name(i: int) -> str:
        a = atoms[i]
        if a.element.symbol != "H" or hydrogen_names:
            return f"{a.residue.name}:{a.name}"
        return f"{a.residue.name}:H"

    keys = []
    n = len(rows)
    for col, first, width in ((BOND, 1, 2), (ANGLE, 2, 3), (TORSION, 3, 4)):
        for r in range(first, n):
            members = [int(a) for a in rows[r, :width]]
            if col == ANGLE and bool(closures[r]):  # closing bond i-m: falls back to bonds
                i, m = members[0], members[2]
                keys.append(("c:" + "-".join(name(a) for a in members),
                             f"b:{atoms[i].element.symbol}-{atoms[m].element.symbol}", "c"))
                continue
            kind = "bat"[col]
            keys.append((
                f"{kind}:" + "-".join(name(a) for a in members),
                f"{kind}:" + "-".join(atoms[a].element.symbol for a in members),
                kind,
            ))
    return keys


def _hydrogen_stem(name: str) -> str:
    """A hydrogen's name without its number among equivalent ones (``HB2`` → ``HB``, ``HG12``
    → ``HG1``, N-terminal ``H1``/``H2``/``H3`` → ``HT``)."""
    if name in ("H1", "H2", "H3"):
        return "HT"
    return name[:-1] if len(name) > 2 and name[-1].isdigit() else name


def _chemistry_keys_v2(topology: Any, rows: Tensor, closures: Tensor, free: Tensor,
                       torsions: Tensor, analogs: bool = False, planar: bool = False
                       ) -> list[tuple[str, ...]]:
    """Per flat coordinate: ``(exact, relative, relative with any main chain, [dipeptide
    analog,] element, type)`` keys of its normalization.

    - Hydrogens are named by their stem (``HB2``, ``HB3`` → ``HB``), and a hydrogen's rigid
      torsion (an offset of about ±120° from a sibling) carries the sign it has in the given
      configuration (``…:+``/``…:-``). Which of two methylene hydrogens a structure calls HB2
      is arbitrary (OpenMM's ``Modeller`` places them at random; in the dipeptide dataset Arg-Cys
      names them the other way round from Cys-Met), so names gave one ±120° key with a 0.9 rad
      spread; the geometry does not.
    - The *relative* key names atoms by their residue offset from the row's atom and writes the
      residue of main-chain atoms as ``*`` (except Pro, Gly and caps), with ``^``/``$`` marking
      the chain's first and last residue: the peptide bond of a held-out ``AC`` is keyed like
      that of every training dipeptide, where the exact key (``ALA:C-CYS:N``) was never seen and
      the element key (``C-N``) pools peptide and Cα–N bonds, free and rigid torsions. A
      second relative key treats Pro's and Gly's main chain like any other (Gly–Pro was never
      a training pair).
    - With ``analogs`` (key version 3), the exact key writes the residue offset of an atom in
      another residue (``ALA:O-ALA:C-ALA:CA-+1ALA:N``): without it the carbonyl O of a
      capped Ala-Ala's first Ala, whose torsion partner is the next residue's N, took the
      statistics of a C-terminal Ala's O, whose partner is its own N. And the
      *dipeptide-analog* key gives what a model trained
      on uncapped dipeptides never saw the place of the same chemistry in a dipeptide: a
      middle residue (of a tripeptide or a capped peptide) is neither first nor last, so its
      relative keys match nothing, and without this key its peptide bonds fell back to the
      element key (C–N: 0.142 instead of 0.134 nm) and its carbonyl O's offset to a pooled
      one (O on top of the next N in every sample). Across residues the lower one is written
      as a chain's first (``^``) and the higher as its last (``$``): a peptide bond is every
      dipeptide's; within a middle residue or a cap, a coordinate with its amide N or H is
      written as a last residue's (amide side), any other as a first residue's (carbonyl
      side); the caps' carbonyl, amide and methyl carbons are main-chain C, O, N, H and Cα
      (:data:`CAP_ANALOGS`). The element key of a rigid hydrogen torsion carries its sign, and
      after it comes ``t:H-*-*-H:±`` (any centre: a sibling hydrogen ±120° away), so the
      methyl hydrogens of a cap never seen keep apart.
    - With ``planar`` (key version 4), a rigid hydrogen torsion within :data:`PLANAR` of 0 or
      ±π is keyed ``:0`` or ``:pi``: its sign would depend on which side of the plane the given
      configuration happens to sit.
    """
    atoms = list(topology.atoms)
    residues = list(topology.residues)
    first, last = residues[0].index, residues[-1].index

    def stem(a: Any) -> str:
        return _hydrogen_stem(a.name) if a.element.symbol == "H" else a.name

    def exact(i: int, origin: int) -> str:
        offset = atoms[i].residue.index - atoms[origin].residue.index if analogs else 0
        name = f"{atoms[i].residue.name}:{stem(atoms[i])}"
        return f"{offset:+d}{name}" if offset else name

    def relative(i: int, origin: int, own: frozenset[str] = OWN_BACKBONE) -> str:
        a = atoms[i]
        res = a.residue.name
        if stem(a) in BACKBONE and res not in own:
            res = "*"
        res += ("^" if a.residue.index == first else "") + ("$" if a.residue.index == last else "")
        offset = a.residue.index - atoms[origin].residue.index
        return f"{offset:+d}{res}:{stem(a)}" if offset else f"{res}:{stem(a)}"

    def role(a: Any) -> str:  # the main-chain atom a cap atom plays, else its own stem
        return CAP_ANALOGS.get((a.residue.name, stem(a)), stem(a))

    def analog(i: int, origin: int, members: list[int]) -> str:
        a = atoms[i]
        res, name = a.residue, role(a)
        if res.name in CAPS:  # its carbonyl, amide and methyl carbon as main chain, its H apart
            label = "*" if (res.name, stem(a)) in CAP_ANALOGS else res.name
        else:
            label = "*" if name in BACKBONE else res.name
        span = {atoms[m].residue.index for m in members}
        if len(span) > 1:  # across residues: the lower is a first residue, the higher a last
            label += "^" if res.index == min(span) else "$"
        elif res.index == first and res.name not in CAPS:
            label += "^" + ("$" if res.index == last else "")
        elif res.index == last and res.name not in CAPS:
            label += "$"
        else:  # a middle residue or a cap: amide side like a last residue, else a first's
            amide = any(role(atoms[m]) in ("N", "H") for m in members)
            label += "$" if amide else "^"
        offset = res.index - atoms[origin].residue.index
        return f"{offset:+d}{label}:{name}" if offset else f"{label}:{name}"

    keys: list[tuple[str, ...]] = []
    n = len(rows)
    for col, start, width in ((BOND, 1, 2), (ANGLE, 2, 3), (TORSION, 3, 4)):
        for r in range(start, n):
            members = [int(a) for a in rows[r, :width]]
            kind = "bat"[col]
            element = f"{kind}:" + "-".join(atoms[a].element.symbol for a in members)
            if col == ANGLE and bool(closures[r]):  # closing bond i-m: falls back to bonds
                kind = "c"
                element = f"b:{atoms[members[0]].element.symbol}-{atoms[members[2]].element.symbol}"
            sign = ""
            if col == TORSION and atoms[members[0]].element.symbol == "H" and not bool(free[r - 3]):
                angle = float(torsions[r - 3])
                if planar and abs(angle) < PLANAR:
                    sign = ":0"
                elif planar and abs(angle) > math.pi - PLANAR:
                    sign = ":pi"
                else:
                    sign = ":+" if angle > 0 else ":-"
            keys.append((
                f"{kind}:" + "-".join(exact(a, members[0]) for a in members) + sign,
                f"{kind}:" + "-".join(relative(a, members[0]) for a in members) + sign,
                f"{kind}:" + "-".join(relative(a, members[0], CAPS_ONLY) for a in members) + sign,
                *([f"{kind}:" + "-".join(analog(a, members[0], members) for a in members) + sign,
                   element + sign] if analogs else [element]),
                *([f"t:{atoms[members[0]].element.symbol}-*-*-"
                   f"{atoms[members[3]].element.symbol}{sign}"] if analogs and sign else []),
                kind,
            ))
    return keys


# ------------------------------------------------------------------------------------------
# per-chemistry normalization


def fit_chemistry(molecules: list[Molecule], flats: list[Tensor]) -> dict[str, list[float]]:
    """``{key: [mean, std]}`` of every coordinate key over training frames (flat ICs).

    Torsions: circular mean, and the spread of the wrapped offsets (used for rigid ones).
    """
    values: dict[str, list[Tensor]] = {}
    for mol, flat in zip(molecules, flats):
        for column, keys in zip(flat.T, mol.keys):
            for key in keys:
                values.setdefault(key, []).append(column)
    stats = {}
    for key, parts in values.items():
        v = torch.cat(parts).double()
        if key.startswith("t"):
            mean = math.atan2(float(v.sin().mean()), float(v.cos().mean()))
            offset = torch.remainder(v - mean + math.pi, 2 * math.pi) - math.pi
            mean, std = mean + float(offset.mean()), float(offset.std()) if len(v) > 1 else 0.0
        else:
            mean, std = float(v.mean()), float(v.std()) if len(v) > 1 else 0.0
        stats[key] = [mean, std]
    return stats


def fitted_key(keys: tuple[str, ...], stats: dict[str, list[float]]) -> str | None:
    """The first of a coordinate's keys (most specific first) that ``stats`` holds, if any."""
    return next((k for k in keys if k in stats), None)


def normalization_for(mol: Molecule, stats: dict[str, list[float]]) -> ICNormalization:
    """The molecule's :class:`ICNormalization` from per-chemistry statistics (fallbacks: the
    element key, the coordinate type, :data:`DEFAULT_STD`)."""
    n_flat = mol.ic.dim
    shift = torch.zeros(n_flat, dtype=torch.float64)
    log_scale = torch.zeros(n_flat, dtype=torch.float64)
    circular = mol.flat(mol.circular[None].float())[0].bool()
    for i, keys in enumerate(mol.keys):
        key = fitted_key(keys, stats)
        mean, std = stats[key] if key is not None else (None, None)
        default = DEFAULT_STD[keys[-1]]
        if mean is None:
            mean, std = (0.0, 1.0) if keys[-1] == "t" else (float("nan"), default)
        shift[i] = mean
        log_scale[i] = 0.0 if circular[i] else math.log(max(std or default, default / 10))
    if torch.isnan(shift).any():
        raise BoltzflowError(f"{mol.label}: a bond or angle has no statistics at all; train on "
                             "data that holds its element combination")
    norm = ICNormalization(n_flat, mol.ic.torsion_indices)
    norm.shift.copy_(shift)
    norm.log_scale.copy_(log_scale)
    return norm.float()


# ------------------------------------------------------------------------------------------
# the conditioned flow over padded row tables


@dataclass
class RowContext:
    """A padded batch of molecules' rows.

    Attributes:
        tokens: ``[B, R, 4, 5]`` (``-1``: a missing reference or a padding row).
        entries: ``[B, R, 3]`` coordinates that exist.
        circular: ``[B, R, 3]`` free torsions.
        hops: ``[B, R, R]`` graph distances between rows (padding: ``MAX_HOPS + 1``).
        rows: ``[B, R]`` real rows.
        codes: ``[B, R]`` the rows' torsion codes (:attr:`Molecule.codes`; padding: 0).
    """

    tokens: Tensor
    entries: Tensor
    circular: Tensor
    hops: Tensor
    rows: Tensor
    codes: Tensor

    @classmethod
    def pad(cls, molecules: list[Molecule]) -> RowContext:
        """Stack ``molecules`` padded to the largest."""
        r = max(m.n_rows for m in molecules)

        def stack(get: Any, fill: int | bool, shape: tuple[int, ...]) -> Tensor:
            out = []
            for m in molecules:
                t = get(m)
                full = torch.full(shape, fill, dtype=t.dtype)
                full[tuple(slice(0, s) for s in t.shape)] = t
                out.append(full)
            return torch.stack(out)

        return cls(
            stack(lambda m: m.tokens, -1, (r, 4, len(FEATURES))),
            stack(lambda m: m.entries, False, (r, 3)),
            stack(lambda m: m.circular, False, (r, 3)),
            stack(lambda m: m.hops, MAX_HOPS + 1, (r, r)),
            stack(lambda m: torch.ones(m.n_rows, dtype=torch.bool), False, (r,)),
            stack(lambda m: m.codes, 0, (r,)),
        )

    def to(self, device: torch.device) -> RowContext:
        """On ``device``."""
        return RowContext(*(t.to(device) for t in (self.tokens, self.entries, self.circular,
                                                   self.hops, self.rows, self.codes)))


class RowTokens(nn.Module):
    """A row's token: the sum of its atom's and its three references' feature embeddings, one
    table per reference slot."""

    def __init__(self, vocabulary: Vocabulary, hidden: int):
        super().__init__()
        sizes = vocabulary.sizes
        self.tables = nn.ModuleList(
            nn.ModuleList(nn.Embedding(sizes[f] + 1, hidden) for f in FEATURES) for _ in range(4))
        # the 20 tables laid end to end: each one's size and first row (not in the state dict)
        rows = torch.tensor([sizes[f] + 1 for _ in range(4) for f in FEATURES])
        self.register_buffer("sizes", rows, persistent=False)
        self.register_buffer("offsets", torch.cumsum(rows, 0) - rows, persistent=False)

    def forward(self, tokens: Tensor) -> Tensor:
        """``[B, R, 4, 5]`` → ``[B, R, hidden]`` (index −1 is the padding token).

        One summed lookup (``embedding_bag``) in the 20 tables laid end to end: the same sum
        as 20 lookups, with one gradient scatter instead of 20."""
        flat = tokens.reshape(-1, len(self.sizes))
        index = torch.where(flat < 0, self.sizes - 1, flat) + self.offsets
        weight = torch.cat([table.weight for slot in self.tables for table in slot])
        out = nn.functional.embedding_bag(index, weight, mode="sum")
        return out.view(*tokens.shape[:-2], -1)


class Block(nn.Module):
    """Pre-norm transformer block with a per-head additive attention bias."""

    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.qkv, self.out = nn.Linear(hidden, 3 * hidden), nn.Linear(hidden, hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.SiLU(),
                                 nn.Linear(2 * hidden, hidden))

    def forward(self, h: Tensor, bias: Tensor) -> Tensor:
        """``h: [B, R, H]``, ``bias: [B, heads, R, R]`` (−inf on padding keys)."""
        b, r, width = h.shape
        q, k, v = self.qkv(self.norm1(h)).view(b, r, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        att = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        h = h + self.out(att.transpose(1, 2).reshape(b, r, width))
        return h + self.mlp(self.norm2(h))


class Conditioner(nn.Module):
    """Transformer over rows: spline parameters of every entry from the visible values."""

    def __init__(self, p: TBGICParams, vocabulary: Vocabulary):
        super().__init__()
        self.tokens = RowTokens(vocabulary, p.hidden)
        self.values = nn.Linear(3 * 4, p.hidden)
        self.hop_bias = nn.Embedding(MAX_HOPS + 2, p.heads)
        self.blocks = nn.ModuleList(Block(p.hidden, p.heads) for _ in range(p.attention_layers))
        self.head = nn.Linear(p.hidden, 3 * 3 * p.n_bins)
        nn.init.zeros_(self.head.weight)  # a fresh layer is the identity
        nn.init.zeros_(self.head.bias)

    def forward(self, y: Tensor, visible: Tensor, ctx: RowContext) -> Tensor:
        """``y: [B, R, 3]`` values; ``visible``: entries the conditioner may read →
        ``[B, R, 3, 3K]`` spline parameters."""
        v = torch.where(visible, y, 0.0)
        feats = torch.cat([v, torch.where(visible, y.cos(), 0.0), torch.where(visible, y.sin(),
                           0.0), visible.float().expand_as(y)], -1)
        h = self.tokens(ctx.tokens) + self.values(feats)
        bias = self.hop_bias(ctx.hops).permute(0, 3, 1, 2)
        bias = bias.masked_fill(~ctx.rows[:, None, None, :], -math.inf)
        for block in self.blocks:
            h = block(h, bias.to(h.dtype))
        return self.head(h).view(*y.shape, -1)


#: Entry groups transformed by successive layers: (column set, row parity). Under these, a
#: dipeptide's ψ₁, φ₂ and ψ₂ (rows of one parity) never conditioned on each other.
PATTERNS = (((TORSION,), 0), ((TORSION,), 1), ((BOND, ANGLE), 0), ((BOND, ANGLE), 1))
#: With ``torsion_codes``: (column set, bit of the row's code (``None``: row parity), value).
CODED_PATTERNS = (((TORSION,), 0, 0), ((TORSION,), 0, 1), ((BOND, ANGLE), None, 0),
                  ((BOND, ANGLE), None, 1), ((TORSION,), 1, 0), ((TORSION,), 1, 1),
                  ((BOND, ANGLE), None, 0), ((BOND, ANGLE), None, 1))


class RowFlow(nn.Module):
    """The conditioned coupling flow over padded row tables (``forward``: latent → normalized
    internal coordinates).

    Args:
        p: the section.
        vocabulary: the chemistry the tokens know.
        torsion_codes: torsion layers group rows by their codes' bits (:data:`CODED_PATTERNS`)
            instead of row parity (:data:`PATTERNS`, models before).
    """

    def __init__(self, p: TBGICParams, vocabulary: Vocabulary, torsion_codes: bool = False):
        super().__init__()
        self.vocabulary, self.n_bins, self.bound = vocabulary, p.n_bins, p.bound
        self.torsion_codes = torsion_codes
        self.layers = nn.ModuleList(Conditioner(p, vocabulary) for _ in range(p.n_layers))

    def _mask(self, layer: int, ctx: RowContext) -> Tensor:
        col = torch.zeros(3, dtype=torch.bool, device=ctx.entries.device)
        parity = torch.arange(ctx.entries.shape[1], device=col.device) % 2
        if self.torsion_codes:
            cols, bit, value = CODED_PATTERNS[layer % len(CODED_PATTERNS)]
            rows = (parity if bit is None else (ctx.codes >> bit) % 2) == value
        else:
            cols, value = PATTERNS[layer % len(PATTERNS)]
            rows = parity == value
        col[list(cols)] = True
        return ctx.entries & ctx.rows[..., None] & col & rows[..., None]

    def _layer(self, i: int, y: Tensor, ctx: RowContext, inverse: bool) -> tuple[Tensor, Tensor]:
        moving = self._mask(i, ctx)
        params = self.layers[i](y, ctx.entries & ~moving, ctx)
        k = self.n_bins
        circ = moving & ctx.circular
        lin = moving & ~ctx.circular
        y_lin, ld_lin = rational_quadratic_spline(
            torch.where(lin, y, 0.0), *params[..., : 3 * k - 1].split([k, k, k - 1], -1),
            inverse=inverse, bound=self.bound)
        y_circ, ld_circ = circular_rational_quadratic_spline(
            torch.where(circ, y, 0.0), *params.split([k, k, k], -1), inverse=inverse)
        out = torch.where(lin, y_lin, torch.where(circ, y_circ, y))
        logdet = (torch.where(lin, ld_lin, 0.0) + torch.where(circ, ld_circ, 0.0)).flatten(1)
        return out, logdet.sum(-1)

    def forward(self, z: Tensor, ctx: RowContext) -> tuple[Tensor, Tensor]:
        """Latent table → normalized internal coordinates, log-det ``[B]``."""
        logdet = z.new_zeros(len(z))
        for i in range(len(self.layers)):
            z, ld = self._layer(i, z, ctx, inverse=False)
            logdet = logdet + ld
        return z, logdet

    def inverse(self, y: Tensor, ctx: RowContext) -> tuple[Tensor, Tensor]:
        """Normalized internal coordinates → latent table, log-det ``[B]``."""
        logdet = y.new_zeros(len(y))
        for i in reversed(range(len(self.layers))):
            y, ld = self._layer(i, y, ctx, inverse=True)
            logdet = logdet + ld
        return y, logdet


def log_prior(z: Tensor, ctx: RowContext) -> Tensor:
    """``log p₀`` of latent tables: N(0, 1) on real Euclidean entries, uniform on the circle
    for free torsions ``[B]``."""
    real = ctx.entries & ctx.rows[..., None]
    lin = real & ~ctx.circular
    normal = torch.where(lin, -0.5 * z.pow(2) - 0.5 * math.log(2 * math.pi), 0.0)
    circle = torch.where(real & ctx.circular, -math.log(2 * math.pi), 0.0)
    return (normal + circle).flatten(1).sum(-1)


class MoleculeFlow(Bijection):
    """The row flow with one molecule's context fixed, on its flat coordinates
    ``[B, 3R − 6]`` (``forward``: latent → normalized internal coordinates)."""

    def __init__(self, flow: RowFlow, molecule: Molecule):
        super().__init__()
        self.flow, self.molecule = flow, molecule
        self.context = RowContext.pad([molecule])

    def _run(self, z: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        # the context keeps its batch of one and broadcasts: the token embeddings and the
        # attention bias are computed once, not once per sample
        ctx = self.context.to(z.device)
        table = self.molecule.table(z)
        out, logdet = (self.flow.inverse if inverse else self.flow.forward)(table, ctx)
        return self.molecule.flat(out), logdet

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Latent → normalized internal coordinates."""
        return self._run(z, inverse=False)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Normalized internal coordinates → latent."""
        return self._run(x, inverse=True)


# ------------------------------------------------------------------------------------------
# the model kind


@dataclass
class PeptideTables:
    """The training frames of one peptide as normalized row tables.

    Attributes:
        molecule: its rows.
        tables: ``[F, R, 3]`` normalized internal coordinates (float32); with a per-molecule
            bound (``torsion_bound``), before it (the bound's inverse applied).
        logdet: ``[F]`` that inverse's log-det (``None``: no per-molecule bound).
        system_id: the peptide's system (its energy, for the reverse KL).
        offset: ``[F]`` ``u + log|det ∂ic/∂x|`` of each frame: what ``-log w`` adds to the
            tables' log-density, up to a constant per peptide (``None``: not needed, ``w_lv``
            is 0).
    """

    molecule: Molecule
    tables: Tensor
    logdet: Tensor | None = None
    system_id: str = ""
    offset: Tensor | None = None


class TBGICKind(ModelKind):
    """One conditioned internal-coordinate flow for many peptides."""

    name = "tbg-ic"
    Params = TBGICParams
    transferable = True
    system_defaults = {"id": ""}
    #: Energy-training settings may change when a run resumes (fine-tuning on the energy).
    resumable = ("tbg-ic.w_kl", "tbg-ic.kl_start", "tbg-ic.kl_peptides", "tbg-ic.kl_samples",
                 "tbg-ic.u_high", "tbg-ic.w_lv")
    train_defaults = {"batch_size": 128, "checkpoint_every": 250, "warmup": 100,
                      "clip_grad": 10.0}
    sample_defaults = {"batch_size": 2000, "n_samples": 1000}

    def __init__(self, config: RunConfig, module: RowFlow, stats: dict[str, list[float]],
                 info: dict[str, Any], peptides: list[PeptideTables] | None = None,
                 layout: dict[str, Any] | None = None):
        super().__init__(config, module, None)
        self.stats, self.peptides = stats, peptides or []
        self.layout = dict(LAYOUT if layout is None else layout)
        self.info.update(info)
        # the bound on the row tables' bond and angle columns (padding rows are 0: inside it)
        self._table_bound = self.tail_bound((3,), [BOND, ANGLE])
        #: training peptide → (its flow, its energy), built on first use by the reverse KL
        self._kl_targets: dict[int, tuple[Flow, Any]] = {}

    @staticmethod
    def layout_of(metadata: dict[str, Any] | None) -> dict[str, Any]:
        """The layout a checkpoint's metadata records (``None``: a new model, :data:`LAYOUT`;
        models from before ring closures and tail bounds: neither)."""
        if metadata is None:
            return dict(LAYOUT)
        return {"ring_closures": bool(metadata.get("ring_closures", False)),
                "tail_bound": metadata.get("tail_bound"),
                "hydrogen_names": bool(metadata.get("hydrogen_names", False)),
                "key_version": int(metadata.get("key_version", 1)),
                "torsion_bound": bool(metadata.get("torsion_bound", False)),
                "torsion_codes": bool(metadata.get("torsion_codes", False))}

    def tail_bound(self, shape: int | tuple[int, ...], indices: Tensor | list[int]
                   ) -> TailBound | None:
        """The bound on lengths and angles (normalized units), or ``None`` without one."""
        outer = self.layout.get("tail_bound")
        if outer is None:
            return None
        bound = self.params.bound
        return TailBound(shape, indices, inner=bound, outer=max(float(outer), 2 * bound))

    @classmethod
    def check_config(cls, config: RunConfig) -> None:
        """Whole peptides per batch."""
        check_whole_molecules(config)

    @classmethod
    def build(cls, config: RunConfig, source: TrainingSet) -> TBGICKind:
        """Statistics and tables of the ``train`` split of ``source.dataset``; a fresh flow."""
        vocabulary = ic_vocabulary()
        layout = cls.layout_of(source.previous)
        raw = load_peptide_ics(source.dataset, vocabulary, config.system.max_frames,
                               ring_closures=layout["ring_closures"],
                               hydrogen_names=layout["hydrogen_names"],
                               key_version=layout.get("key_version", 1))
        if not raw:
            raise BoltzflowError(
                f"the dataset {source.dataset} has no training peptides with frames; build it "
                "with `boltzflow dataset dipeptides --out DIR`")
        stats = (source.previous or {}).get("stats") or fit_chemistry(
            [m for m, _ in raw], [f for _, f in raw])
        from ..data.dipeptides import load_index

        index = load_index(source.dataset)
        offsets = (load_peptide_offsets(source.dataset, [m for m, _ in raw],
                                        config.system.max_frames)
                   if config.params.w_lv > 0 else [None] * len(raw))
        peptides = [replace(tables_of(m, f, stats, config.params, layout),
                            system_id=index.entry(m.label).system_id, offset=o)
                    for (m, f), o in zip(raw, offsets, strict=True)]
        torch.manual_seed(config.train.seed)
        info = {"dataset": str(source.dataset), "train_sequences": [m.label for m, _ in raw]}
        return cls(config, RowFlow(config.params, vocabulary, layout["torsion_codes"]), stats,
                   info, peptides, layout)

    @classmethod
    def restore(cls, config: RunConfig, metadata: dict[str, Any], system: System | None
                ) -> ModelKind:
        """The flow with the checkpoint's vocabulary and chemistry statistics."""
        vocabulary = Vocabulary.from_dict(metadata["vocabulary"])
        info = {k: metadata[k] for k in ("dataset", "train_sequences") if k in metadata}
        layout = cls.layout_of(metadata)
        return cls(config, RowFlow(config.params, vocabulary, layout["torsion_codes"]),
                   metadata["stats"], info, layout=layout)

    @staticmethod
    def upgrade_keys(metadata: dict[str, Any], dataset: str | Path, max_frames: int = 0
                     ) -> dict[str, Any]:
        """A key-version-2 checkpoint's metadata at key version 3, for a model trained on
        uncapped dipeptides: the statistics of the new keys (dipeptide analogs of middle
        residues and caps, signed element keys) fitted on its training split of ``dataset``,
        every statistic it had kept as it was. An uncapped dipeptide's Z-matrix and
        normalization, hence its samples and ``log q``, do not change; capped peptides and
        tripeptides get the keys and frame of version 3."""
        if int(metadata.get("key_version", 1)) != 2:
            raise BoltzflowError(f"only key version 2 upgrades to 3, this checkpoint has "
                                 f"{metadata.get('key_version', 1)}")
        raw = load_peptide_ics(dataset, Vocabulary.from_dict(metadata["vocabulary"]),
                               max_frames, ring_closures=bool(metadata["ring_closures"]),
                               hydrogen_names=bool(metadata["hydrogen_names"]), key_version=3)
        fitted = fit_chemistry([m for m, _ in raw], [f for _, f in raw])
        return {**metadata, "stats": {**fitted, **metadata["stats"]}, "key_version": 3}

    def metadata(self) -> dict[str, Any]:
        """Vocabulary, chemistry statistics, the training peptides and the layout."""
        return {**self.info, "vocabulary": self.module.vocabulary.to_dict(),
                "stats": self.stats, **self.layout}

    def batch(self, step: int) -> tuple[Tensor, RowContext, Tensor | None, Tensor | None]:
        """This rank's padded tables of the global batch of ``step`` (``frames_per_peptide``
        consecutive rows per peptide), with the per-frame bound log-dets and offsets
        (:class:`PeptideTables`; ``None`` where the model has none)."""
        w, k = distributed.world(), self.params.frames_per_peptide
        n_mol = min(self.config.train.batch_size // k, len(self.peptides))
        gen = torch.Generator().manual_seed(distributed.step_seed(self.config.train.seed, step))
        chosen = torch.randperm(len(self.peptides), generator=gen)[:n_mol].tolist()
        frames = [torch.randint(len(self.peptides[i].tables), (k,), generator=gen)
                  for i in chosen]
        mine = list(distributed.shard(n_mol, w))
        if not mine:
            raise BoltzflowError(f"peptides per batch ({n_mol}) must be at least the number of "
                                 f"ranks ({w.size})")
        mols = [self.peptides[chosen[j]].molecule for j in mine for _ in range(k)]
        ctx = RowContext.pad(mols)
        r = ctx.rows.shape[1]
        tables = torch.cat([pad_rows(self.peptides[chosen[j]].tables[frames[j]], r)
                            for j in mine])
        def column(name: str) -> Tensor | None:  # a per-frame column of every peptide, or None
            if getattr(self.peptides[0], name) is None:
                return None
            return torch.cat([getattr(self.peptides[chosen[j]], name)[frames[j]]
                              for j in mine]).to(self.device)

        return tables.to(self.device), ctx.to(self.device), column("logdet"), column("offset")

    def loss(self, batch: tuple[Tensor, RowContext], step: int) -> dict[str, Tensor]:
        """Negative log-likelihood of the normalized coordinates per molecule (the constant
        normalization and Cartesian log-dets left out); with ``w_kl``, plus ``w_kl`` times the
        reverse KL ``E_q[u + log q]`` of a few of the step's training peptides (from
        ``kl_start``)."""
        tables, ctx, bound_logdet, offset = (*batch, None, None)[:4]
        if bound_logdet is None:  # else: the per-molecule bound, precomputed
            bound_logdet = 0.0
            if self._table_bound is not None:
                tables, bound_logdet = self._table_bound.to(tables.device).inverse(tables)
        z, logdet = self.module.inverse(tables, ctx)
        log_q = log_prior(z, ctx) + logdet + bound_logdet
        nll = -log_q.mean()
        p = self.params
        if p.w_kl <= 0 and p.w_lv <= 0:
            return {"loss": nll}
        parts = {"loss": nll, "nll": nll}
        for key, weight in (("kl", p.w_kl), ("lv", p.w_lv)):
            if weight > 0:
                parts[key] = torch.full((), float("nan"))  # before kl_start: the log's column
        if step < p.kl_start:
            return parts
        if p.w_lv > 0:
            if offset is None:
                raise BoltzflowError("tbg-ic.w_lv > 0 needs the frames' energies: build the "
                                     "model with w_lv set (a run resumed with it rebuilds them)")
            a = (log_q + offset).view(-1, p.frames_per_peptide)  # one row per peptide
            parts["lv"] = (a - a.mean(1, keepdim=True)).square().mean()
            parts["loss"] = parts["loss"] + p.w_lv * parts["lv"]
        if p.w_kl > 0:
            parts["kl"] = self._reverse_kl(step)
            parts["loss"] = parts["loss"] + p.w_kl * parts["kl"]
        return parts

    def _reverse_kl(self, step: int) -> Tensor:
        """Mean ``u + log q`` over ``kl_samples`` samples of each of ``kl_peptides`` training
        peptides (this rank's share, chosen per step), energies softened above ``u_high``."""
        from ..training.losses import reverse_kl

        p, w = self.params, distributed.world()
        gen = torch.Generator().manual_seed(distributed.step_seed(self.config.train.seed,
                                                                  step, w.rank) + 1)
        chosen = torch.randperm(len(self.peptides), generator=gen)[:p.kl_peptides].tolist()
        torch.manual_seed(distributed.step_seed(self.config.train.seed, step, w.rank))
        terms = []
        for i in chosen:
            flow, energy = self._kl_target(i)
            terms.append(reverse_kl(flow, energy, p.kl_samples, u_high=p.u_high))
        return torch.stack(terms).mean()

    def _kl_target(self, i: int) -> tuple[Flow, Any]:
        """Training peptide ``i``'s flow (sharing the module's parameters) and its energy in
        the flow's dtype (cached)."""
        from .. import systems

        if i not in self._kl_targets:
            system = systems.get(self.peptides[i].system_id)
            energy = self.energy_of(system).to(self.device, torch.float32)
            self._kl_targets[i] = (self.flow_for(system), energy)
        return self._kl_targets[i]

    def molecule(self, system: System) -> Molecule:
        """The rows of a molecule (raises one line for chemistry outside the vocabulary)."""
        if not isinstance(system, MolecularSystem):
            raise BoltzflowError(f"system {system.id!r} is not a molecule: a tbg-ic model "
                                 "samples peptides")
        return describe_molecule(system.topology, self.module.vocabulary, system.id,
                                 ring_closures=self.layout["ring_closures"],
                                 hydrogen_names=self.layout.get("hydrogen_names", False),
                                 key_version=self.layout.get("key_version", 1),
                                 positions=system.positions)

    def flow_for(self, system: System) -> Flow:
        """``ProductBase → row flow (this molecule) → normalization → internal coordinates →
        x [B, N, 3]`` with exact ``log q`` and its gradient."""
        mol = self.molecule(system)
        circular = torch.nonzero(mol.flat(mol.circular[None].float())[0].bool())[:, 0]
        ic = mol.ic
        norm = normalization_for(mol, self.stats)
        bound = molecule_bound(mol, norm, self.params, self.layout)
        chain = Chain([MoleculeFlow(self.module, mol), *([bound] if bound else []), norm, ic])
        flow = Flow(ProductBase(mol.ic.dim, circular.tolist()), chain, (mol.n_rows, 3))
        return flow.to(self.device)

    def describe(self) -> str:
        """Layers, width and training."""
        p = self.params
        return (f"internal-coordinate transferable flow, {p.n_layers} coupling layers with "
                f"{p.attention_layers}-block transformer conditioners (width {p.hidden}), trained "
                f"on {len(self.info.get('train_sequences', []))} peptides")


def molecule_bound(mol: Molecule, norm: ICNormalization, params: TBGICParams,
                   layout: dict[str, Any]) -> TailBound | None:
    """The bound of one molecule's normalized coordinates: bonds, angles and closing bonds
    within ``tail_bound`` standard deviations, and (``torsion_bound``) every rigid torsion as
    well, and within ``WRAP_MARGIN · π`` of its mean (a wide rigid torsion such as a proline
    ring's, 0.4-0.6 rad, would otherwise wrap within 5-8 standard deviations)."""
    if layout.get("tail_bound") is None:
        return None
    ic, bound = mol.ic, params.bound
    top = max(float(layout["tail_bound"]), 2 * bound)
    index = torch.cat([ic.bond_indices, ic.angle_indices])
    inner = torch.full((len(index),), float(bound), dtype=torch.float64)
    outer = torch.full((len(index),), top, dtype=torch.float64)
    if layout.get("torsion_bound"):
        circular = mol.flat(mol.circular[None].float())[0].bool()
        rigid = ic.torsion_indices[~circular[ic.torsion_indices]]
        wrap = WRAP_MARGIN * math.pi / norm.log_scale.detach().double()[rigid].exp()
        rigid_outer = wrap.clamp(max=top)
        index = torch.cat([index, rigid])
        inner = torch.cat([inner, torch.minimum(torch.full_like(wrap, bound), rigid_outer / 2)])
        outer = torch.cat([outer, rigid_outer])
    return TailBound(ic.dim, index, inner=inner, outer=outer)


def tables_of(mol: Molecule, flat: Tensor, stats: dict[str, list[float]], params: TBGICParams,
              layout: dict[str, Any]) -> PeptideTables:
    """A training peptide's normalized tables (float32); with ``torsion_bound``, the
    per-molecule bound's inverse applied and its log-det kept."""
    norm = normalization_for(mol, stats).double()
    y = norm.inverse(flat.double())[0]
    if not layout.get("torsion_bound"):
        return PeptideTables(mol, mol.table(y.float()).float())
    bound = molecule_bound(mol, norm, params, layout).double()
    y, logdet = bound.inverse(y)
    return PeptideTables(mol, mol.table(y).float(), logdet.float())


def pad_rows(tables: Tensor, r: int) -> Tensor:
    """``[F, R', 3]`` padded with zero rows to ``[F, r, 3]``."""
    return torch.nn.functional.pad(tables, (0, 0, 0, r - tables.shape[1]))


def evenly_spaced(x: Tensor, max_frames: int) -> Tensor:
    """``max_frames`` evenly spaced rows of ``x`` (all when 0 or more than there are)."""
    if 0 < max_frames < len(x):
        return x[torch.linspace(0, len(x) - 1, max_frames).round().long()]
    return x


def load_peptide_offsets(dataset: str | Path, molecules: list[Molecule], max_frames: int = 0
                         ) -> list[Tensor]:
    """Each molecule's ``[F]`` per-frame ``u + log|det ∂ic/∂x|`` (float32; the frames of
    :func:`load_peptide_ics`, ``u`` the reduced energy the dataset stores)."""
    from ..data.dipeptides import load_index

    index = load_index(dataset)
    out = []
    for mol in molecules:
        data = index.dataset(mol.label)
        u = evenly_spaced(data.energies.to(torch.float64), max_frames)
        if not torch.isfinite(u).all():
            raise BoltzflowError(f"peptide {mol.label} of {dataset} has frames without a finite "
                                 "energy; tbg-ic.w_lv needs them: set it to 0")
        ic_logdet = mol.ic.inverse(evenly_spaced(data.positions.to(torch.float64), max_frames))[1]
        out.append((u + ic_logdet).float())
    return out


def load_peptide_ics(
    dataset: str | Path, vocabulary: Vocabulary, max_frames: int = 0, split: str = "train",
    ring_closures: bool = True, hydrogen_names: bool = True, key_version: int = 2,
) -> list[tuple[Molecule, Tensor]]:
    """``(molecule, flat internal coordinates [F, 3R − 6])`` of every peptide of ``split``."""
    from .. import systems
    from ..data.dipeptides import load_index

    index = load_index(dataset)
    out = []
    for seq in index.sequences(split):
        data = index.dataset(seq)
        if len(data) == 0:
            continue
        system = systems.get(index.entry(seq).system_id)
        mol = describe_molecule(system.topology, vocabulary, seq, ring_closures, hydrogen_names,
                                key_version, positions=data.positions[0])
        out.append((mol, mol.ic.inverse(evenly_spaced(data.positions.to(torch.float64),
                                                max_frames))[0]))
    return out
