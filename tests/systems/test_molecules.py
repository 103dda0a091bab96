"""Molecular systems: named targets, peptides from sequences, user PDB files, input errors."""

from __future__ import annotations

import io
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

import boltzflow as bf
from boltzflow.conventions import kT
from boltzflow.errors import BoltzflowError
from boltzflow.systems import MolecularSystem, from_pdb, from_sequence
from boltzflow.systems.molecules import AMINO_ACIDS

openmm = pytest.importorskip("openmm")
from openmm import app, unit  # noqa: E402  (after importorskip)


def openmm_kj(system, x: np.ndarray) -> float:
    """Potential energy (kJ/mol) of ``x [n_atoms, 3]`` nm on the Reference platform."""
    context = openmm.Context(
        system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference")
    )
    context.setPositions(x)
    state = context.getState(getEnergy=True)
    return state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)


def write_pdb(system: MolecularSystem, path, keep_hydrogens: bool = True) -> None:
    buf = io.StringIO()
    app.PDBFile.writeFile(system.openmm_topology, system.positions.numpy() * unit.nanometer, buf)
    lines = buf.getvalue().splitlines()
    if not keep_hydrogens:
        lines = [
            ln for ln in lines if not (ln.startswith(("ATOM", "HETATM")) and ln[76:78] == " H")
        ]
        lines = [ln for ln in lines if not ln.startswith("CONECT")]
    path.write_text("\n".join(lines) + "\n")


def force_classes(system: MolecularSystem) -> set[str]:
    return {type(f).__name__ for f in system.openmm_system.getForces()}


# --- named targets ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "system_id, n_atoms, forcefield, solvent, temperature, gb",
    [
        ("aldp-vacuum", 22, "amber99sb-ildn", "vacuum", 300.0, None),
        ("aldp-implicit", 22, "amber99sb-ildn", "obc2", 300.0, "GBSAOBCForce"),
        ("dipeptide:AA", 23, "amber14", "obc2", 310.0, "GBSAOBCForce"),
        ("dipeptide:AK", 35, "amber14", "obc2", 310.0, "GBSAOBCForce"),
    ],
)
def test_named_targets(system_id, n_atoms, forcefield, solvent, temperature, gb):
    system = bf.systems.get(system_id)
    assert isinstance(system, MolecularSystem)
    assert (system.id, system.n_atoms, system.event_shape) == (system_id, n_atoms, (n_atoms, 3))
    assert (system.forcefield, system.solvent, system.temperature) == (
        forcefield,
        solvent,
        temperature,
    )
    assert system.topology.n_atoms == system.openmm_system.getNumParticles() == n_atoms
    assert system.positions.shape == (n_atoms, 3) and system.positions.dtype == torch.float64
    assert f"{temperature:g} K" in system.description and system.reference
    classes = force_classes(system)
    assert "CustomGBForce" not in classes and (gb is None or gb in classes)
    # the system's energy is the OpenMM energy in kT
    u = system.energy.energy(system.positions[None]).item()
    expected = openmm_kj(system.openmm_system, system.positions.numpy()) / kT(temperature)
    assert u == pytest.approx(expected, abs=1e-6)


def test_openmm_energy_backend():
    pytest.importorskip("boltzflow.energies.openmm")
    torch_system = bf.systems.get("aldp-implicit")
    openmm_system = from_sequence(
        "ACE-ALA-NME", forcefield="amber99sb-ildn", solvent="obc2", energy="openmm"
    )
    x = torch_system.positions[None]
    assert torch.equal(openmm_system.positions, torch_system.positions)
    u_openmm = openmm_system.energy.energy(x)
    assert torch.allclose(u_openmm, torch_system.energy.energy(x), atol=1e-6)
    assert torch.allclose(torch_system.openmm_energy().energy(x), u_openmm, atol=1e-9)


def test_aldp_description_and_residues():
    system = bf.systems.get("aldp-implicit")
    assert system.description == "ACE-ALA-NME, amber99sb-ildn, OBC2, 300 K"
    assert [r.name for r in system.topology.residues] == ["ACE", "ALA", "NME"]
    assert system.topology.n_bonds == 21


def test_registry_lists_family_and_parses_ids():
    assert {"aldp-vacuum", "aldp-implicit", "dipeptide:XY"} <= set(bf.systems.available())
    assert bf.systems.get("dipeptide:gk").id == "dipeptide:GK"
    for bad in ("dipeptide:XY", "dipeptide:AZ", "dipeptide:AAA", "dipeptide"):
        with pytest.raises(BoltzflowError, match="dipeptide:XY"):
            bf.systems.get(bad)


def test_cached_builds_are_fresh_and_reproducible():
    a, b = bf.systems.get("aldp-vacuum"), bf.systems.get("aldp-vacuum")
    assert a.energy is not b.energy and a.openmm_system is not b.openmm_system
    assert torch.equal(a.positions, b.positions)
    a.positions.add_(1.0)  # callers may modify what they get
    assert torch.equal(bf.systems.get("aldp-vacuum").positions, b.positions)
    # a build in a new process (no cache) gives the same minimized structure
    code = (
        "import boltzflow as bf; p = bf.systems.get('aldp-vacuum').positions; "
        "print(repr(p.sum().item()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert float(out.stdout) == b.positions.sum().item()


# --- force fields and solvents ------------------------------------------------------------------


def test_native_obc2_equals_implicit_obc2_xml():
    """amber14 + OBC2 uses a native GBSAOBCForce equivalent to ``implicit/obc2.xml``'s."""
    ff = app.ForceField("amber14-all.xml", "implicit/obc2.xml")
    for sequence in ("ACE-ALA-NME", "DR"):
        system = from_sequence(sequence, forcefield="amber14", solvent="obc2")
        x = system.positions.numpy()
        custom = ff.createSystem(system.openmm_topology, nonbondedMethod=app.NoCutoff)
        e_native, e_custom = openmm_kj(system.openmm_system, x), openmm_kj(custom, x)
        if sequence == "ACE-ALA-NME":
            assert e_native == pytest.approx(e_custom, abs=1e-4)
        # the only difference is the Coulomb constant hard-coded in the custom expressions
        (gb,) = [f for f in custom.getForces() if isinstance(f, openmm.CustomGBForce)]
        for k in range(gb.getNumEnergyTerms()):
            expression, kind = gb.getEnergyTermParameters(k)
            gb.setEnergyTermParameters(k, expression.replace("138.935485", "138.9354576444"), kind)
        assert e_native == pytest.approx(openmm_kj(custom, x), abs=1e-6)


@pytest.mark.parametrize("forcefield", ["amber14", "amber99sb-ildn"])
@pytest.mark.parametrize("solvent", ["vacuum", "obc1", "obc2"])
def test_forcefield_solvent_grid(forcefield, solvent):
    system = from_sequence("A", capped=True, forcefield=forcefield, solvent=solvent, minimize=False)
    classes = force_classes(system)
    gb = {"vacuum": set(), "obc1": {"CustomGBForce"}, "obc2": {"GBSAOBCForce"}}[solvent]
    assert classes & {"CustomGBForce", "GBSAOBCForce"} == gb
    assert "NonbondedForce" in classes and system.openmm_system.getNumConstraints() == 0
    (nb,) = [f for f in system.openmm_system.getForces() if isinstance(f, openmm.NonbondedForce)]
    assert nb.getNonbondedMethod() == openmm.NonbondedForce.NoCutoff
    masses = [system.openmm_system.getParticleMass(i)._value for i in range(system.n_atoms)]
    assert min(masses) == pytest.approx(1.008, abs=1e-3)  # no hydrogen-mass repartitioning


def test_all_amino_acids_build():
    for letter in AMINO_ACIDS:
        system = from_sequence(letter + "A", solvent="vacuum", minimize=False)
        names = [r.name for r in system.topology.residues]
        assert names == [AMINO_ACIDS[letter], "ALA"]
        atoms = {a.name for a in system.topology.atoms}
        assert {"H2", "H3", "OXT"} <= atoms  # NH3+ and COO- termini
        u = system.energy.energy(system.positions[None])
        assert torch.isfinite(u).all()
        assert system.openmm_system.getNumParticles() == system.n_atoms


def test_three_letter_and_capped_sequences():
    one = from_sequence("GK", solvent="vacuum", minimize=False)
    three = from_sequence("gly-lys", solvent="vacuum", minimize=False)
    assert torch.equal(one.positions, three.positions)
    assert from_sequence(["ALA"], capped=True, minimize=False).n_atoms == 22
    capped = from_sequence("ACE-GLY-NME", solvent="vacuum", minimize=False)
    assert [r.name for r in capped.topology.residues] == ["ACE", "GLY", "NME"]


def test_minimization_lowers_the_energy():
    raw = from_sequence("AK", solvent="obc2", minimize=False)
    minimized = from_sequence("AK", solvent="obc2")
    u_raw = raw.energy.energy(raw.positions[None]).item()
    u_min = minimized.energy.energy(minimized.positions[None]).item()
    assert u_min < u_raw
    assert torch.linalg.norm(minimized.energy.force(minimized.positions[None])).item() < 50.0


# --- PDB files ----------------------------------------------------------------------------------


def test_pdb_round_trip(tmp_path):
    built = bf.systems.get("dipeptide:HK")
    path = tmp_path / "hk.pdb"
    write_pdb(built, path)
    read = from_pdb(path, solvent="obc2", temperature=310.0, minimize=False)
    assert read.n_atoms == built.n_atoms
    names = [(a.residue.name, a.name) for a in read.topology.atoms]
    assert names == [(a.residue.name, a.name) for a in built.topology.atoms]
    x = read.positions.numpy()
    assert np.abs(x - built.positions.numpy()).max() < 1e-4  # PDB precision: 0.001 Å
    assert openmm_kj(read.openmm_system, x) == pytest.approx(
        openmm_kj(built.openmm_system, x), abs=1e-8
    )
    assert read.id == "pdb:hk.pdb/amber14/obc2/310K"
    assert read.description == "HIS-LYS (hk.pdb), amber14, OBC2, 310 K"


def test_pdb_without_hydrogens_gets_them(tmp_path):
    built = bf.systems.get("aldp-vacuum")
    path = tmp_path / "heavy.pdb"
    write_pdb(built, path, keep_hydrogens=False)
    assert sum(ln.startswith(("ATOM", "HETATM")) for ln in path.read_text().splitlines()) == 10
    read = from_pdb(path, forcefield="amber99sb-ildn", solvent="vacuum", system_id="mine")
    assert (read.n_atoms, read.id) == (22, "mine")
    u = read.energy.energy(read.positions[None]).item()
    assert math.isfinite(u) and u < 0


# --- errors -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ak_pdb_text() -> str:
    buf = io.StringIO()
    system = bf.systems.get("dipeptide:AK")
    app.PDBFile.writeFile(system.openmm_topology, system.positions.numpy() * unit.nanometer, buf)
    return buf.getvalue()


def _without(text: str, residue: str, atom: str) -> str:
    return "\n".join(
        ln for ln in text.splitlines() if not (ln[17:20] == residue and ln[12:16].strip() == atom)
    )


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda t: "", "no ATOM/HETATM records"),
        (lambda t: t.replace("LYS", "XYZ"), "residue XYZ 2 .*not supported.*ALA"),
        (lambda t: t.replace("ALA A", "HOH A"), "residue HOH 1 .*remove water"),
        (lambda t: _without(t, "ALA", "CB"), "residue ALA 1 .*missing heavy atoms CB.*PDBFixer"),
        (lambda t: _without(t, "LYS", "NZ"), "residue LYS 2 .*missing heavy atoms NZ.*PDBFixer"),
        (lambda t: _without(t, "LYS", "OXT"), "LYS 2 .*no OXT.*NME"),
        (lambda t: t.replace(t.splitlines()[2][30:38], "   abc  ", 1), "malformed PDB file"),
    ],
)
def test_bad_pdb_files(tmp_path, ak_pdb_text, edit, match):
    path = tmp_path / "bad.pdb"
    path.write_text(edit(ak_pdb_text))
    with pytest.raises(BoltzflowError, match=match):
        from_pdb(path)


def test_missing_pdb_file(tmp_path):
    with pytest.raises(BoltzflowError, match="cannot read PDB file .*nope.pdb"):
        from_pdb(tmp_path / "nope.pdb")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"forcefield": "charmm36"}, "unknown force field 'charmm36'; choose one of: amber14, "),
        ({"solvent": "tip3p"}, "unknown solvent 'tip3p'; choose one of: vacuum, obc1, obc2"),
        ({"energy": "jax"}, "unknown energy 'jax'; choose one of: torch, openmm"),
        ({"temperature": 0.0}, "temperature must be a positive number"),
        ({"temperature": -300}, "temperature must be a positive number"),
        ({"temperature": float("nan")}, "temperature must be a positive number"),
    ],
)
def test_bad_options(kwargs, match):
    with pytest.raises(BoltzflowError, match=match):
        from_sequence("AA", **kwargs)


@pytest.mark.parametrize(
    "sequence, match",
    [
        ("AZ", "unknown amino acid 'Z' at position 2 .*ACDEFGHIKLMNPQRSTVWY"),
        ("ALA-XYZ", "unknown residue 'XYZ'.*20 standard amino acids"),
        ("ALA-NME", "cap NME misplaced"),
        ("", "empty sequence"),
    ],
)
def test_bad_sequences(sequence, match):
    with pytest.raises(BoltzflowError, match=match):
        from_sequence(sequence)


def test_import_boltzflow_does_not_import_openmm():
    code = (
        "import sys, boltzflow; bf = boltzflow; bf.systems.from_pdb; "
        "print(any(m in sys.modules for m in ('openmm', 'mdtraj', 'PeptideBuilder')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("system_id", ["peptide:", "peptide:SEQ", "peptide:AXG"])
def test_peptide_ids_name_the_fix_in_one_line(system_id):
    with pytest.raises(BoltzflowError) as err:
        bf.systems.get(system_id)
    assert len(str(err.value).splitlines()) == 1
    assert "peptide:AKG" in str(err.value) or "unknown amino acid 'X'" in str(err.value)
