"""Parity sweep: TorchForceField (float64) against OpenMM's Reference platform, every dipeptide.

Molecules: the 20 capped dipeptides ACE-X-NME and the 20 uncapped homodipeptides X-X
(zwitterions NH3+ ... COO-, so that every amino acid is checked both as N- and C-terminal
residue), one per amino acid, built with :func:`boltzflow.systems.from_sequence`, plus a
user-PDB system (ACE-ALA-LYS-ASP-NME written to a PDB file and read back with
:func:`boltzflow.systems.from_pdb`). Each in both force fields (amber14, amber99sb-ildn) and
every solvent (vacuum, OBC1 = CustomGBForce, OBC2 = native GBSAOBCForce): all combinations are
defined. For each system, ``--configs`` configurations: the minimized structure plus Gaussian
noise of 0.005, 0.01 and 0.02 nm in turn (seeded).

Checks per system (the issue's acceptance criteria): max |E_torch - E_openmm| < 1e-3 kJ/mol and
max over configurations of ``‖F_torch - F_openmm‖ / ‖F_openmm‖ < 1e-5``. Prints one row per
system, the totals and the run time; the exit code is 1 if any system fails.

    .venv/bin/python bench/parity.py                  # the full sweep (~250 systems)
    .venv/bin/python bench/parity.py --amino-acids A K W --forcefields amber14
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from boltzflow import systems
from boltzflow.systems.molecules import AMINO_ACIDS

ENERGY_TOL = 1e-3  # kJ/mol
FORCE_TOL = 1e-5  # relative
FORCEFIELDS = ("amber14", "amber99sb-ildn")
SOLVENTS = ("vacuum", "obc1", "obc2")
NOISE = (0.005, 0.01, 0.02)  # nm, cycled over the configurations
PDB_SEQUENCE = "ACE-ALA-LYS-ASP-NME"


def configurations(positions: np.ndarray, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scale = np.resize(np.array(NOISE), n)[:, None, None]
    return positions[None] + scale * rng.standard_normal((n, *positions.shape))


def openmm_reference(system, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Energies (kJ/mol) and forces (kJ/mol/nm) on OpenMM's Reference platform."""
    import openmm

    context = openmm.Context(
        system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference")
    )
    energies, forces = np.empty(len(xs)), np.empty_like(xs)
    for k, pos in enumerate(xs):
        context.setPositions(pos)
        state = context.getState(getEnergy=True, getForces=True)
        energies[k] = state.getPotentialEnergy()._value
        forces[k] = state.getForces(asNumpy=True)._value
    return energies, forces


def check(molecule, n_configs: int, seed: int) -> tuple[float, float]:
    """``(max |ΔE| kJ/mol, max relative force error)`` of ``molecule`` over perturbed configs."""
    xs = configurations(molecule.positions.numpy(), n_configs, seed)
    ref_energy, ref_force = openmm_reference(molecule.openmm_system, xs)
    ff = molecule.energy  # TorchForceField
    u, f = ff.energy_and_force(torch.from_numpy(xs))
    energy = (u * ff.kT).numpy()
    force = (f * ff.kT).numpy()
    d_energy = np.abs(energy - ref_energy).max()
    diff = (force - ref_force).reshape(len(xs), -1)
    rel = np.linalg.norm(diff, axis=1) / np.linalg.norm(ref_force.reshape(len(xs), -1), axis=1)
    return float(d_energy), float(rel.max())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--amino-acids", nargs="+", default=list(AMINO_ACIDS), metavar="X")
    parser.add_argument("--forcefields", nargs="+", default=list(FORCEFIELDS))
    parser.add_argument("--solvents", nargs="+", default=list(SOLVENTS))
    parser.add_argument("--configs", type=int, default=50, help="configurations per system")
    parser.add_argument("--no-pdb", action="store_true", help="skip the user-PDB system")
    args = parser.parse_args()
    torch.set_num_threads(1)

    molecules = [(f"ACE-{AMINO_ACIDS[x]}-NME", x, True) for x in args.amino_acids]
    molecules += [(f"{AMINO_ACIDS[x]}-{AMINO_ACIDS[x]}", x + x, False) for x in args.amino_acids]
    pdb_path = None
    if not args.no_pdb:
        from openmm import app

        built = systems.from_sequence(PDB_SEQUENCE, forcefield="amber14", solvent="vacuum")
        pdb_path = Path(tempfile.mkdtemp()) / "user_peptide.pdb"
        with open(pdb_path, "w") as fh:
            app.PDBFile.writeFile(built.openmm_topology, built.positions.numpy() * 10, fh)

    start = time.perf_counter()
    print("| system | force field | solvent | atoms | max abs dE (kJ/mol) | max rel dF | result |")
    print("|---|---|---|---:|---:|---:|---|")
    failures, total, seed = [], 0, 0
    rows = [(name, seq, capped, ff, solv) for name, seq, capped in molecules
            for ff in args.forcefields for solv in args.solvents]  # fmt: skip
    if pdb_path is not None:
        rows += [(f"pdb:{pdb_path.name}", None, None, ff, solv)
                 for ff in args.forcefields for solv in args.solvents]  # fmt: skip
    for name, seq, capped, ff, solv in rows:
        if seq is None:
            molecule = systems.from_pdb(pdb_path, forcefield=ff, solvent=solv)
        else:
            molecule = systems.from_sequence(seq, capped=capped, forcefield=ff, solvent=solv)
        d_energy, d_force = check(molecule, args.configs, seed)
        seed += 1
        ok = d_energy < ENERGY_TOL and d_force < FORCE_TOL
        total += 1
        if not ok:
            failures.append(f"{name}/{ff}/{solv}")
        print(
            f"| {name} | {ff} | {solv} | {molecule.n_atoms} | {d_energy:.2e} | {d_force:.2e} | "
            f"{'PASS' if ok else 'FAIL'} |",
            flush=True,
        )
    elapsed = time.perf_counter() - start
    print(
        f"\n{total - len(failures)}/{total} systems pass ({args.configs} configurations each, "
        f"float64; |dE| < {ENERGY_TOL:g} kJ/mol, relative force error < {FORCE_TOL:g}) "
        f"in {elapsed:.0f} s"
    )
    if failures:
        print("FAILED: " + ", ".join(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
