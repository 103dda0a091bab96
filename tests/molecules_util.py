"""Small molecules for force-field tests: dipeptides built with PeptideBuilder + OpenMM Modeller.

``build(sequence, forcefield, solvent)`` returns an OpenMM ``System`` (no cutoff, no constraints)
and energy-minimized positions ``[n_atoms, 3]`` in nm. ``sequence="ACE-ALA-NME"`` gives capped
alanine dipeptide: PeptideBuilder builds Ala-Ala-Ala, then the first residue is cut down to its
CA, C, O (renamed ACE; OpenMM's pdbNames maps CA to CH3) and the last to its N, CA (renamed NME;
CA maps to C), and Modeller adds the hydrogens.
"""

from __future__ import annotations

import io
from functools import cache

import numpy as np

FORCEFIELDS = {"amber14": "amber14-all.xml", "amber99sb-ildn": "amber99sbildn.xml"}
ONE_LETTER = {
    "ALA": "A",
    "ARG": "R",
    "ASN": "N",
    "ASP": "D",
    "CYS": "C",
    "GLN": "Q",
    "GLU": "E",
    "GLY": "G",
    "HIS": "H",
    "ILE": "I",
    "LEU": "L",
    "LYS": "K",
    "MET": "M",
    "PHE": "F",
    "PRO": "P",
    "SER": "S",
    "THR": "T",
    "TRP": "W",
    "TYR": "Y",
    "VAL": "V",
}


def _heavy_atom_pdb(sequence: str) -> str:
    """PDB text of the heavy atoms of ``sequence`` (one-letter or ``ACE-XXX-NME``)."""
    from Bio.PDB import PDBIO
    from PeptideBuilder import PeptideBuilder

    capped = sequence.startswith("ACE-")
    if capped:
        middle = sequence.split("-")[1:-1]
        letters = "A" + "".join(ONE_LETTER[r] for r in middle) + "A"
    else:
        letters = sequence
    # phi/psi of a compact (C7eq-like) start, so minimization lands in a sensible basin
    n = len(letters)
    structure = PeptideBuilder.make_structure(letters, [-80.0] * (n - 1), [80.0] * (n - 1))
    if not capped:
        PeptideBuilder.add_terminal_OXT(structure)
    buf = io.StringIO()
    pdbio = PDBIO()
    pdbio.set_structure(structure)
    pdbio.save(buf)
    lines = [ln for ln in buf.getvalue().splitlines() if ln.startswith("ATOM")]
    if not capped:
        return "\n".join(lines + ["END"]) + "\n"
    out = []
    for ln in lines:
        name, resseq = ln[12:16].strip(), int(ln[22:26])
        if resseq == 1:
            if name not in ("CA", "C", "O"):
                continue
            ln = ln[:17] + "ACE" + ln[20:]
        elif resseq == n:
            if name not in ("N", "CA"):
                continue
            ln = ln[:17] + "NME" + ln[20:]
        out.append(ln)
    return "\n".join(out + ["END"]) + "\n"


@cache
def build(sequence: str, forcefield: str = "amber14", solvent: str = "vacuum"):
    """``(system, positions [n_atoms, 3] nm, topology)`` for a peptide, energy-minimized.

    Args:
        sequence: one-letter dipeptide (``"AK"``, zwitterionic) or ``"ACE-ALA-NME"``.
        forcefield: ``"amber14"`` or ``"amber99sb-ildn"``.
        solvent: ``"vacuum"``, ``"obc1"`` (CustomGBForce of ``implicit/obc1.xml``), ``"obc2"``
            (native ``GBSAOBCForce`` with the radii and scales of ``implicit/obc2.xml``),
            ``"obc2-custom"`` (the CustomGBForce of ``implicit/obc2.xml`` itself) or
            ``"obc1-salt"`` (obc1 with a Debye screening ``kappa = 1 / nm``).
    """
    import openmm
    from openmm import app, unit

    pdb = app.PDBFile(io.StringIO(_heavy_atom_pdb(sequence)))
    files = [FORCEFIELDS[forcefield]]
    if solvent != "vacuum":
        files.append(f"implicit/{solvent.split('-')[0]}.xml")
    ff = app.ForceField(*files)
    modeller = app.Modeller(pdb.topology, pdb.positions)
    modeller.addHydrogens(ff if solvent == "vacuum" else app.ForceField(files[0]), pH=7.0)
    kwargs = {"implicitSolventKappa": 1.0 / unit.nanometer} if solvent == "obc1-salt" else {}
    system = ff.createSystem(
        modeller.topology, nonbondedMethod=app.NoCutoff, constraints=None, **kwargs
    )
    if solvent == "obc2":
        system = _native_obc2(system)
    context = openmm.Context(
        system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference")
    )
    context.setPositions(modeller.positions)
    openmm.LocalEnergyMinimizer.minimize(context, 1.0, 500)
    pos = (
        context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    )
    return system, np.asarray(pos, dtype=np.float64), modeller.topology


def _native_obc2(system):
    """Replace the CustomGBForce of ``implicit/obc2.xml`` by a native ``GBSAOBCForce``."""
    import openmm

    (index,) = [i for i, f in enumerate(system.getForces()) if isinstance(f, openmm.CustomGBForce)]
    custom = system.getForce(index)
    expr = custom.getEnergyTermParameters(0)[0]
    solvent = float(expr.split("solventDielectric=")[1].split(";")[0])
    solute = float(expr.split("soluteDielectric=")[1].split(";")[0])
    native = openmm.GBSAOBCForce()
    native.setSolventDielectric(solvent)
    native.setSoluteDielectric(solute)
    native.setNonbondedMethod(openmm.GBSAOBCForce.NoCutoff)
    for i in range(custom.getNumParticles()):
        charge, offset_radius, scaled_radius = custom.getParticleParameters(i)
        # obc2.xml stores or = radius - 0.009 and sr = scale * or
        native.addParticle(charge, offset_radius + 0.009, scaled_radius / offset_radius)
    system.removeForce(index)
    system.addForce(native)
    return system
