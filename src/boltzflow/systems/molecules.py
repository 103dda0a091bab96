"""Molecular systems from a PDB file or an amino-acid sequence, with an Amber force field.

Every system is built the same way: heavy atoms (read from a PDB file, or built with
PeptideBuilder from a sequence) → hydrogens added by OpenMM's ``Modeller`` at pH 7 → an OpenMM
``System`` with no cutoff, no constraints, flexible water and no hydrogen-mass repartitioning →
energy minimization on OpenMM's Reference platform. OpenMM and mdtraj are imported inside the
functions that need them, so importing this module is cheap.

Force fields and solvents (``forcefield`` × ``solvent``):

=================  ===========================  =============================================
forcefield         vacuum                       obc1 / obc2
=================  ===========================  =============================================
``amber14``        ``amber14-all.xml``          ``implicit/obc1.xml`` (CustomGBForce) /
                                                ``implicit/obc2.xml`` turned into an
                                                equivalent native ``GBSAOBCForce``
``amber99sb-ildn`` ``amber99sbildn.xml``        ``implicit/obc1.xml`` (CustomGBForce) /
                                                ``amber99_obc.xml`` (native ``GBSAOBCForce``)
=================  ===========================  =============================================
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import random
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import BoltzflowError
from .molecule import FORCEFIELDS, SOLVENTS, MolecularSystem
from .registry import register

__all__ = ["AMINO_ACIDS", "ENERGIES", "from_pdb", "from_sequence"]

#: One-letter → three-letter codes of the 20 standard amino acids.
AMINO_ACIDS: dict[str, str] = {
    "A": "ALA", "C": "CYS", "D": "ASP", "E": "GLU", "F": "PHE", "G": "GLY", "H": "HIS",
    "I": "ILE", "K": "LYS", "L": "LEU", "M": "MET", "N": "ASN", "P": "PRO", "Q": "GLN",
    "R": "ARG", "S": "SER", "T": "THR", "V": "VAL", "W": "TRP", "Y": "TYR",
}  # fmt: skip

#: Energy back-ends accepted by the builders.
ENERGIES = ("torch", "openmm")

_BACKBONE = ("N", "CA", "C", "O")
_SIDE_CHAINS = {
    "ALA": "CB", "ARG": "CB CG CD NE CZ NH1 NH2", "ASN": "CB CG OD1 ND2", "ASP": "CB CG OD1 OD2",
    "CYS": "CB SG", "GLN": "CB CG CD OE1 NE2", "GLU": "CB CG CD OE1 OE2", "GLY": "",
    "HIS": "CB CG ND1 CD2 CE1 NE2", "ILE": "CB CG1 CG2 CD1", "LEU": "CB CG CD1 CD2",
    "LYS": "CB CG CD CE NZ", "MET": "CB CG SD CE", "PHE": "CB CG CD1 CD2 CE1 CE2 CZ",
    "PRO": "CB CG CD", "SER": "CB OG", "THR": "CB OG1 CG2",
    "TRP": "CB CG CD1 CD2 NE1 CE2 CE3 CZ2 CZ3 CH2", "TYR": "CB CG CD1 CD2 CE1 CE2 CZ OH",
    "VAL": "CB CG1 CG2",
}  # fmt: skip
#: Heavy atoms every supported residue must have (names as OpenMM's PDB reader normalizes them).
_HEAVY_ATOMS = {
    **{res: frozenset(_BACKBONE + tuple(side.split())) for res, side in _SIDE_CHAINS.items()},
    "ACE": frozenset({"C", "O", "CH3"}),
    "NME": frozenset({"N", "C"}),
}
#: Protonation variants accepted in PDB files, with the residue whose heavy atoms they have.
_VARIANTS = {
    "HID": "HIS", "HIE": "HIS", "HIP": "HIS", "CYX": "CYS", "CYM": "CYS", "ASH": "ASP",
    "GLH": "GLU", "LYN": "LYS",
}  # fmt: skip
_AMINO_ACIDS_TEXT = f"the 20 standard amino acids ({', '.join(sorted(_SIDE_CHAINS))})"
_SUPPORTED_TEXT = (
    f"{_AMINO_ACIDS_TEXT}, their protonation variants ({', '.join(_VARIANTS)}) "
    "and the caps ACE, NME"
)

_FORCEFIELD_FILES = {"amber14": "amber14-all.xml", "amber99sb-ildn": "amber99sbildn.xml"}
_SOLVENT_FILES = {
    ("amber14", "obc1"): "implicit/obc1.xml",
    ("amber14", "obc2"): "implicit/obc2.xml",  # its CustomGBForce is made native below
    ("amber99sb-ildn", "obc1"): "implicit/obc1.xml",
    ("amber99sb-ildn", "obc2"): "amber99_obc.xml",  # a native GBSAOBCForce already
}
_SOLVENT_LABELS = {"vacuum": "vacuum", "obc1": "OBC1", "obc2": "OBC2"}
_REFERENCES = {
    "amber14": "ff14SB: Maier et al., J. Chem. Theory Comput. 11, 3696 (2015)",
    "amber99sb-ildn": "amber99sb-ildn: Lindorff-Larsen et al., Proteins 78, 1950 (2010)",
    "obc": "OBC GB: Onufriev, Bashford & Case, Proteins 55, 383 (2004)",
}
#: Dielectric offset (nm) of the Amber OBC models: ``implicit/*.xml`` store ``radius - offset``.
_OBC_OFFSET = 0.009
#: Starting backbone dihedrals (degrees) of built peptides: C7eq-like, minimizes cleanly.
_PHI, _PSI = -80.0, 80.0


@dataclass(frozen=True)
class _Built:
    """A built molecule; cached, so never handed out: :func:`_assemble` copies what it returns."""

    topology: Any  # openmm.app.Topology
    system: Any  # openmm.System
    positions: np.ndarray  # [n_atoms, 3] float64, nm
    residues: tuple[str, ...]


# ---------------------------------------------------------------------------------------------
# public builders


def from_pdb(
    path: str | os.PathLike,
    *,
    forcefield: str = "amber14",
    solvent: str = "obc2",
    temperature: float = 300.0,
    energy: str = "torch",
    minimize: bool = True,
    system_id: str | None = None,
) -> MolecularSystem:
    """A molecular system from a PDB file (first model).

    Missing hydrogens are added with OpenMM's ``Modeller`` at pH 7 (hydrogens already present are
    kept, so a complete file is used as is); heavy atoms must all be present. A peptide chain must
    end in a capping group (ACE, NME) or a charged terminus (the C-terminal residue has ``OXT``).

    Args:
        path: PDB file.
        forcefield: one of ``"amber14"``, ``"amber99sb-ildn"``.
        solvent: one of ``"vacuum"``, ``"obc1"``, ``"obc2"`` (see the module docstring).
        temperature: temperature in kelvin (> 0).
        energy: ``"torch"`` (:class:`~boltzflow.energies.forcefield.TorchForceField`) or
            ``"openmm"`` (:class:`~boltzflow.energies.openmm.OpenMMEnergy`, Reference platform).
        minimize: energy-minimize the structure (L-BFGS on the Reference platform).
        system_id: id of the system; default ``"pdb:<file name>/<forcefield>/<solvent>/<T>K"``.

    Returns:
        A :class:`MolecularSystem` whose ``positions`` ``[n_atoms, 3]`` (nm, float64) are the
        (minimized) structure.

    Raises:
        BoltzflowError: unreadable, empty or malformed file; unsupported residue; missing heavy
            atoms; unknown force field, solvent or energy; non-positive temperature.

    Example:
        >>> system = bf.systems.from_pdb("aldp.pdb", forcefield="amber99sb-ildn",
        ...                              solvent="vacuum")  # doctest: +SKIP
    """
    temperature = _check_options(forcefield, solvent, temperature, energy)
    path = Path(path)
    topology, positions = _read_pdb(path)
    residues = _check_residues(topology, source=f"PDB file {path}")
    built = _build(topology, positions, forcefield, solvent, minimize, residues)
    label = "-".join(residues) if len(residues) <= 8 else f"{len(residues)} residues"
    return _assemble(
        built,
        system_id=system_id or f"pdb:{path.name}/{forcefield}/{solvent}/{temperature:g}K",
        label=f"{label} ({path.name})",
        forcefield=forcefield,
        solvent=solvent,
        temperature=temperature,
        energy=energy,
    )


def from_sequence(
    sequence: str | list[str] | tuple[str, ...],
    *,
    capped: bool = False,
    forcefield: str = "amber14",
    solvent: str = "obc2",
    temperature: float = 300.0,
    energy: str = "torch",
    minimize: bool = True,
    system_id: str | None = None,
) -> MolecularSystem:
    """A peptide built from its sequence.

    The backbone is built with PeptideBuilder (trans peptide bonds, every φ = -80°, ψ = 80°,
    PeptideBuilder's default side-chain rotamers); hydrogens are added with OpenMM's
    ``Modeller`` at pH 7 (Lys, Arg charged; Asp, Glu charged; His neutral, tautomer chosen by
    Modeller), then the structure is minimized. Uncapped peptides are zwitterions (NH3+ … COO-,
    with ``OXT``); ``capped=True`` adds an acetyl (ACE) and an N-methylamide (NME) cap, whose
    heavy atoms come from the backbone of an extra residue at each end.

    Args:
        sequence: one-letter codes without separators (``"AK"``), or three-letter codes
            separated by ``-``, spaces or commas (``"ALA-LYS"``) or given as a list. A
            three-letter sequence ``"ACE-…-NME"`` means ``capped=True``. A string without
            separators is always one-letter: ``"ALA"`` is Ala-Leu-Ala (write ``["ALA"]``).
        capped: add ACE/NME caps instead of charged termini.
        forcefield, solvent, temperature, energy, minimize: as in :func:`from_pdb`.
        system_id: id of the system; default ``"<ACE-…-NME>/<forcefield>/<solvent>/<T>K"``.

    Raises:
        BoltzflowError: unknown amino acid; bad force field, solvent, energy or temperature.

    Example:
        >>> aldp = bf.systems.from_sequence("A", capped=True, forcefield="amber99sb-ildn",
        ...                                 solvent="vacuum")  # doctest: +SKIP
        >>> aldp.n_atoms  # doctest: +SKIP
        22
    """
    temperature = _check_options(forcefield, solvent, temperature, energy)
    residues, caps_named = _parse_sequence(sequence)
    capped = capped or caps_named
    built = _build_peptide(residues, capped, forcefield, solvent, bool(minimize))
    label = "-".join(built.residues)
    return _assemble(
        built,
        system_id=system_id or f"{label}/{forcefield}/{solvent}/{temperature:g}K",
        label=label,
        forcefield=forcefield,
        solvent=solvent,
        temperature=temperature,
        energy=energy,
    )


# ---------------------------------------------------------------------------------------------
# named targets


@register("aldp-vacuum", "alanine dipeptide ACE-ALA-NME, amber99sb-ildn, vacuum, 300 K")
def _aldp_vacuum() -> MolecularSystem:
    return _aldp("aldp-vacuum", "vacuum")


@register("aldp-implicit", "alanine dipeptide ACE-ALA-NME, amber99sb-ildn, OBC2 implicit, 300 K")
def _aldp_implicit() -> MolecularSystem:
    return _aldp("aldp-implicit", "obc2")


@register(
    "dipeptide:XY",
    "uncapped zwitterionic dipeptide X-Y (X, Y any of the 20 one-letter codes, e.g. "
    "dipeptide:AK), amber14, OBC2 implicit, 310 K",
)
def _dipeptide(system_id: str = "dipeptide:XY") -> MolecularSystem:
    letters = system_id.partition(":")[2].upper()
    if len(letters) != 2 or any(c not in AMINO_ACIDS for c in letters):
        raise BoltzflowError(
            f"{system_id!r} names no dipeptide; write dipeptide:XY with X and Y two of the "
            f"one-letter codes {''.join(AMINO_ACIDS)}, e.g. dipeptide:AK"
        )
    system = from_sequence(
        letters,
        forcefield="amber14",
        solvent="obc2",
        temperature=310.0,
        system_id=f"dipeptide:{letters}",
    )
    return dataclasses.replace(
        system,
        reference="Klein & Noé, Transferable Boltzmann Generators, NeurIPS 2024; "
        + system.reference,
    )


@register(
    "peptide:SEQ",
    "any short peptide from its sequence: one-letter codes (peptide:AKG, zwitterionic) or "
    "ACE-…-NME three-letter codes (peptide:ACE-ALA-ALA-NME, capped), amber14, OBC2 implicit, "
    "310 K",
)
def _peptide(system_id: str = "peptide:SEQ") -> MolecularSystem:
    sequence = system_id.partition(":")[2]
    if not sequence or sequence == "SEQ":
        raise BoltzflowError(
            f"{system_id!r} names no peptide; write peptide:AKG (one-letter codes) or "
            "peptide:ACE-ALA-ALA-NME (three-letter codes with caps)"
        )
    text = sequence if "-" in sequence else sequence.upper()
    return from_sequence(text, forcefield="amber14", solvent="obc2", temperature=310.0,
                         system_id=f"peptide:{text}")


def _aldp(system_id: str, solvent: str) -> MolecularSystem:
    system = from_sequence(
        "ACE-ALA-NME",
        forcefield="amber99sb-ildn",
        solvent=solvent,
        temperature=300.0,
        system_id=system_id,
    )
    return dataclasses.replace(
        system, reference="Noé et al., Science 365, eaaw1147 (2019); " + system.reference
    )


# ---------------------------------------------------------------------------------------------
# input checks


def _check_options(forcefield: str, solvent: str, temperature: float, energy: str) -> float:
    if forcefield not in FORCEFIELDS:
        raise BoltzflowError(
            f"unknown force field {forcefield!r}; choose one of: {', '.join(FORCEFIELDS)}"
        )
    if solvent not in SOLVENTS:
        raise BoltzflowError(f"unknown solvent {solvent!r}; choose one of: {', '.join(SOLVENTS)}")
    if energy not in ENERGIES:
        raise BoltzflowError(f"unknown energy {energy!r}; choose one of: {', '.join(ENERGIES)}")
    try:
        t = float(temperature)
    except (TypeError, ValueError):
        t = float("nan")
    if isinstance(temperature, bool) or not (math.isfinite(t) and t > 0):
        raise BoltzflowError(
            f"temperature must be a positive number of kelvin, got {temperature!r}"
        )
    return t


def _parse_sequence(sequence: str | list[str] | tuple[str, ...]) -> tuple[tuple[str, ...], bool]:
    """``(three-letter residue names without caps, whether ACE/NME caps were named)``."""
    if isinstance(sequence, str):
        text = sequence.strip()
        tokens = text.replace(",", " ").replace("-", " ").split()
        one_letter = len(tokens) == 1 and tokens[0] == text
    else:
        tokens, one_letter = [str(t).strip() for t in sequence], False
    if not tokens:
        raise BoltzflowError(
            f"empty sequence {sequence!r}; give one-letter codes such as 'AK' or "
            "three-letter codes such as 'ALA-LYS'"
        )
    if one_letter:
        names = []
        for i, c in enumerate(tokens[0].upper()):
            if c not in AMINO_ACIDS:
                raise BoltzflowError(
                    f"unknown amino acid {c!r} at position {i + 1} of {sequence!r}; use the "
                    f"one-letter codes {''.join(AMINO_ACIDS)} (or separated three-letter codes)"
                )
            names.append(AMINO_ACIDS[c])
        return tuple(names), False
    names = [t.upper() for t in tokens]
    caps = len(names) >= 3 and names[0] == "ACE" and names[-1] == "NME"
    if caps:
        names = names[1:-1]
    known = set(AMINO_ACIDS.values())
    for name in names:
        if name in ("ACE", "NME"):
            raise BoltzflowError(
                f"cap {name} misplaced in sequence {sequence!r}; write 'ACE-…-NME' "
                "or pass capped=True"
            )
        if name not in known:
            raise BoltzflowError(
                f"unknown residue {name!r} in sequence {sequence!r}; use {_AMINO_ACIDS_TEXT}"
            )
    return tuple(names), caps


def _read_pdb(path: Path) -> tuple[Any, np.ndarray]:
    """``(openmm Topology, positions [n_atoms, 3] nm)`` of the first model of a PDB file."""
    from openmm import app, unit

    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise BoltzflowError(
            f"cannot read PDB file {path} ({type(err).__name__}: {err}); "
            "give the path to a readable text .pdb file"
        ) from err
    if not any(line.startswith(("ATOM", "HETATM")) for line in text.splitlines()):
        raise BoltzflowError(
            f"PDB file {path} has no ATOM/HETATM records; give a PDB file with coordinates"
        )
    try:
        pdb = app.PDBFile(io.StringIO(text))
        positions = np.asarray(pdb.getPositions(asNumpy=True).value_in_unit(unit.nanometer))
    except Exception as err:  # OpenMM's reader fails with many exception types
        raise BoltzflowError(
            f"malformed PDB file {path} ({type(err).__name__}: {err}); check the fixed-column "
            "ATOM/HETATM records (coordinates in columns 31-54)"
        ) from err
    if pdb.topology.getNumAtoms() == 0:
        raise BoltzflowError(f"PDB file {path} has no atoms; give a PDB file with coordinates")
    return pdb.topology, positions.astype(np.float64)


def _check_residues(topology: Any, source: str) -> tuple[str, ...]:
    """Every residue supported and complete in heavy atoms; returns the residue names."""
    names = []
    for chain in topology.chains():
        residues = list(chain.residues())
        for k, res in enumerate(residues):
            where = f"{source}: residue {res.name} {res.id} (chain {chain.id})"
            base = _VARIANTS.get(res.name, res.name)
            if base not in _HEAVY_ATOMS:
                raise BoltzflowError(
                    f"{where} is not supported; supported residues are {_SUPPORTED_TEXT} "
                    "(remove water, ions and ligands)"
                )
            heavy = {a.name for a in res.atoms() if a.element is None or a.element.symbol != "H"}
            missing = sorted(_HEAVY_ATOMS[base] - heavy)
            if missing:
                raise BoltzflowError(
                    f"{where} is missing heavy atoms {', '.join(missing)} that the force field "
                    "cannot build; complete the structure (e.g. with PDBFixer) or give a "
                    "complete one"
                )
            if k == len(residues) - 1 and base in _SIDE_CHAINS and "OXT" not in heavy:
                raise BoltzflowError(
                    f"{where} ends the chain but has no OXT atom; add it (e.g. with PDBFixer) "
                    "or cap the chain with NME"
                )
            names.append(res.name)
    return tuple(names)


# ---------------------------------------------------------------------------------------------
# building


@lru_cache(maxsize=512)
def _build_peptide(
    residues: tuple[str, ...], capped: bool, forcefield: str, solvent: str, minimize: bool
) -> _Built:
    topology, positions = _peptide_heavy_atoms(residues, capped)
    names = (("ACE",) + residues + ("NME",)) if capped else residues
    return _build(topology, positions, forcefield, solvent, minimize, names)


def _peptide_heavy_atoms(residues: tuple[str, ...], capped: bool) -> tuple[Any, np.ndarray]:
    """Heavy atoms of a peptide: ``(openmm Topology with bonds, positions [n_atoms, 3] nm)``.

    Caps: PeptideBuilder builds an extra Ala at each end; the first keeps CA, C, O (ACE, CA
    renamed CH3), the last keeps N, CA (NME, CA renamed C).
    """
    from openmm import app
    from PeptideBuilder import PeptideBuilder

    one_letter = {three: one for one, three in AMINO_ACIDS.items()}
    letters = "".join(one_letter[r] for r in residues)
    if capped:
        letters = f"A{letters}A"
    n = len(letters)
    structure = PeptideBuilder.make_structure(letters, [_PHI] * (n - 1), [_PSI] * (n - 1))
    if not capped:
        PeptideBuilder.add_terminal_OXT(structure)

    topology = app.Topology()
    chain = topology.addChain("A")
    positions = []
    bio_residues = list(structure[0]["A"])
    for k, bio_res in enumerate(bio_residues):
        name, keep = bio_res.get_resname(), None
        if capped and k == 0:
            name, keep = "ACE", {"CA": "CH3", "C": "C", "O": "O"}
        elif capped and k == n - 1:
            name, keep = "NME", {"N": "N", "CA": "C"}
        residue = topology.addResidue(name, chain, id=str(k + 1))
        for atom in bio_res:
            atom_name = atom.get_id() if keep is None else keep.get(atom.get_id())
            if atom_name is None:
                continue
            topology.addAtom(atom_name, app.Element.getBySymbol(atom.element), residue)
            positions.append(np.asarray(atom.coord, dtype=np.float64) / 10.0)  # Å → nm
    topology.createStandardBonds()
    return topology, np.stack(positions)


@cache
def _forcefield(files: tuple[str, ...]) -> Any:
    from openmm import app

    return app.ForceField(*files)


def _build(
    topology: Any,
    positions: np.ndarray,
    forcefield: str,
    solvent: str,
    minimize: bool,
    residues: tuple[str, ...],
) -> _Built:
    """Add hydrogens, create the OpenMM system, minimize."""
    import openmm
    from openmm import app, unit

    base = _FORCEFIELD_FILES[forcefield]
    extra = _SOLVENT_FILES.get((forcefield, solvent))
    reference = openmm.Platform.getPlatformByName("Reference")
    modeller = app.Modeller(topology, positions * unit.nanometer)
    # Modeller places new hydrogens with the global `random` before relaxing them: seed it (and
    # restore the caller's state) so that a build is reproducible.
    random_state = random.getstate()
    random.seed(0)
    try:
        modeller.addHydrogens(_forcefield((base,)), pH=7.0, platform=reference)
        system = _forcefield((base, extra) if extra else (base,)).createSystem(
            modeller.topology,
            nonbondedMethod=app.NoCutoff,
            constraints=None,
            rigidWater=False,
            hydrogenMass=None,
        )
    except ValueError as err:  # no template: OpenMM's message names the residue
        raise BoltzflowError(
            f"force field {forcefield} cannot build this molecule: {' '.join(str(err).split())}"
            " Check the residue, or give a complete structure (e.g. prepared with PDBFixer)"
        ) from err
    finally:
        random.setstate(random_state)
    if (forcefield, solvent) == ("amber14", "obc2"):
        _make_obc2_native(system)
    xyz = np.asarray(modeller.getPositions().value_in_unit(unit.nanometer), dtype=np.float64)

    context = openmm.Context(system, openmm.VerletIntegrator(0.001), reference)
    context.setPositions(xyz)
    if minimize:
        openmm.LocalEnergyMinimizer.minimize(context, 1.0, 5000)  # tolerance in kJ/mol/nm
    state = context.getState(getPositions=True, getEnergy=True)
    energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    if not math.isfinite(energy):
        raise BoltzflowError(
            f"the energy of the built structure is {energy} kJ/mol; atoms probably overlap: "
            "check the input coordinates"
        )
    xyz = np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer))
    xyz = xyz.astype(np.float64)
    xyz.setflags(write=False)
    return _Built(modeller.topology, system, xyz, residues)


def _make_obc2_native(system: Any) -> None:
    """Replace the CustomGBForce of ``implicit/obc2.xml`` by the equivalent native ``GBSAOBCForce``.

    ``implicit/obc2.xml`` stores per particle ``(charge, or, sr)`` with the offset radius
    ``or = radius - 0.009 nm`` and ``sr = scale * or``; the native force takes
    ``(charge, radius, scale)``, and both use OBC2's (α, β, γ) = (1, 0.8, 4.85) and the ACE
    surface term. The native force is ~40x faster on the Reference platform and agrees up to the
    Coulomb constant (138.935485 there, 138.935456 natively: a relative 2e-7 of the GB energy).
    """
    import openmm

    (index,) = [i for i, f in enumerate(system.getForces()) if isinstance(f, openmm.CustomGBForce)]
    custom = system.getForce(index)
    # the dielectrics are substituted into the energy expression, e.g. "...; solventDielectric=78.5"
    expression, _ = custom.getEnergyTermParameters(0)
    constants = dict(part.strip().split("=") for part in expression.split(";")[1:] if "=" in part)
    native = openmm.GBSAOBCForce()
    native.setNonbondedMethod(openmm.GBSAOBCForce.NoCutoff)
    native.setSolventDielectric(float(constants["solventDielectric"]))
    native.setSoluteDielectric(float(constants["soluteDielectric"]))
    for i in range(custom.getNumParticles()):
        charge, offset_radius, scaled_radius = custom.getParticleParameters(i)
        native.addParticle(charge, offset_radius + _OBC_OFFSET, scaled_radius / offset_radius)
    native.setForceGroup(custom.getForceGroup())
    system.removeForce(index)
    system.addForce(native)


def _assemble(
    built: _Built,
    *,
    system_id: str,
    label: str,
    forcefield: str,
    solvent: str,
    temperature: float,
    energy: str,
) -> MolecularSystem:
    """A fresh :class:`MolecularSystem` (own OpenMM system, positions and energy module)."""
    import copy

    import mdtraj

    system = copy.deepcopy(built.system)
    reference = _REFERENCES[forcefield]
    if solvent != "vacuum":
        reference += "; " + _REFERENCES["obc"]
    return MolecularSystem(
        id=system_id,
        energy=_make_energy(energy, system, temperature),
        temperature=temperature,
        description=f"{label}, {forcefield}, {_SOLVENT_LABELS[solvent]}, {temperature:g} K",
        reference=reference,
        topology=mdtraj.Topology.from_openmm(built.topology),
        openmm_topology=built.topology,
        openmm_system=system,
        positions=torch.tensor(built.positions, dtype=torch.float64),
        forcefield=forcefield,
        solvent=solvent,
    )


def _make_energy(kind: str, system: Any, temperature: float):
    if kind == "openmm":
        from ..energies.openmm import OpenMMEnergy

        return OpenMMEnergy(system, temperature, platform="Reference")
    from ..energies.forcefield import TorchForceField

    return TorchForceField(system, temperature)
