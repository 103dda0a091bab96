"""Hydrogen mass repartitioning: does a 2-fs step with heavier hydrogens sample the same
configurations as 1 fs with the force field's masses, and how much faster is it?

    python bench/hmr.py                                   # Trp-Gly, 1 ns per setting
    python bench/hmr.py --system aldp-implicit --ns 2 --seeds 2
    python bench/hmr.py --data A --data B                 # two MD datasets of one molecule

For each (time step, hydrogen mass) it runs one OpenMM ``LangevinMiddleIntegrator`` walker on the
Reference platform (one thread; 20 ps equilibration, then a frame every 50 fs) and prints the
mean of each force-field term over the frames (kT, with a 10-block standard error), the mean
reduced energy, its spread, and the wall seconds per ns. The configurational Boltzmann
distribution does not depend on the masses, so every row should agree within its errors; the
fast terms (bonds, angles) are the most sensitive to the integrator's discretization error.
One walker's nanosecond samples the side-chain and backbone conformers poorly, so the
non-bonded terms of single walkers differ by more than their block errors; ``--data`` compares
whole datasets instead (e.g. the parallel-tempering MD of two runs of ``boltzflow demo
--system``, one before and one after its plan moved to 2 fs with 3-amu hydrogens): the same
table over each dataset's frames, block errors over 10 stretches of its time.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

#: (time step fs, hydrogen mass amu or None for the force field's masses)
SETTINGS = ((1.0, None), (2.0, 3.0), (2.0, 4.0))
BLOCKS = 10


def run(system, timestep_fs: float, hydrogen_mass: float | None, ns: float, seed: int):
    """Frames ``[n, n_atoms, 3]`` (nm) and the wall seconds of production."""
    import openmm
    from openmm import unit

    from boltzflow.md.walkers import repartition_hydrogen_mass

    md_system = system.openmm_system
    if hydrogen_mass is not None:
        md_system = repartition_hydrogen_mass(md_system, hydrogen_mass)
    integrator = openmm.LangevinMiddleIntegrator(system.temperature, 1.0, timestep_fs / 1000.0)
    integrator.setRandomNumberSeed(seed + 1)
    context = openmm.Context(md_system, integrator, openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(np.asarray(system.positions))
    context.setVelocitiesToTemperature(system.temperature, seed + 1)
    integrator.step(round(20_000 / timestep_fs))
    frames, t0 = [], time.perf_counter()
    for _ in range(round(ns * 20_000)):
        integrator.step(round(50 / timestep_fs))
        state = context.getState(getPositions=True)
        frames.append(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer))
    return np.array(frames), time.perf_counter() - t0


def mean_and_error(values: np.ndarray) -> str:
    blocks = values[: len(values) // BLOCKS * BLOCKS].reshape(BLOCKS, -1).mean(1)
    return f"{values.mean():.2f} ± {blocks.std(ddof=1) / np.sqrt(BLOCKS):.2f}"


def compare_datasets(paths: list[str]) -> None:
    """The mean of each force-field term over each dataset's frames (kT, block errors)."""
    from boltzflow import systems
    from boltzflow.conventions import kT
    from boltzflow.data import Dataset
    from boltzflow.energies.forcefield import TorchForceField

    rows, names = [], []
    for path in paths:
        data = Dataset.load(path)
        p = data.provenance
        system = systems.get(p["system"])
        ff = TorchForceField(system.openmm_system, system.temperature).double()
        kt = kT(system.temperature)
        order = torch.argsort(data.time_ps)
        x = data.positions[order].double()
        terms = {k: torch.cat([ff.terms(c)[k] for c in x.split(4096)]).numpy() / kt
                 for k in ff.term_names}
        names = list(terms)
        cells = [mean_and_error(v) for v in terms.values()]
        u = data.energies[order].numpy()
        rows.append(f"| {path} | {p['timestep_fs']:g} | {p.get('hydrogen_mass_amu') or '–'} | "
                    f"{p['production_ns']:g} | " + " | ".join(cells) +
                    f" | {mean_and_error(u)} | {u.std():.2f} |")
        print(rows[-1], flush=True)
    print(f"\n| dataset | step (fs) | H mass (amu) | ns | {' | '.join(names)} | u | sd(u) |\n|"
          + "---|" * (len(names) + 6) + "\n" + "\n".join(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", default="peptide:ACE-TRP-GLY-NME")
    parser.add_argument("--ns", type=float, default=1.0, help="production per run (ns)")
    parser.add_argument("--seeds", type=int, default=1, help="runs per setting")
    parser.add_argument("--data", action="append", type=str,
                        help="MD dataset(s) to compare instead of running walkers (repeat)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from boltzflow import systems
    from boltzflow.conventions import kT
    from boltzflow.energies.forcefield import TorchForceField

    if args.data:
        compare_datasets(args.data)
        return
    system = systems.get(args.system)
    ff = TorchForceField(system.openmm_system, system.temperature).double()
    kt = kT(system.temperature)
    rows = []
    for timestep_fs, hydrogen_mass in SETTINGS:
        for seed in range(args.seeds):
            x, wall = run(system, timestep_fs, hydrogen_mass, args.ns, seed)
            terms = ff.terms(torch.from_numpy(x))
            u = ff.energy(torch.from_numpy(x)).numpy()
            cells = [mean_and_error(v.numpy() / kt) for v in terms.values()]
            rows.append(f"| {timestep_fs:g} | {hydrogen_mass or '–'} | {seed} | "
                        + " | ".join(cells) + f" | {mean_and_error(u)} | {u.std():.2f} | "
                        f"{wall / args.ns:.0f} |")
            print(rows[-1], flush=True)
    head = (f"{system.id} ({system.n_atoms} atoms), {args.ns:g} ns per run, mean energy terms in kT "
            f"(± standard error over {BLOCKS} blocks)\n\n| step (fs) | H mass (amu) | seed | "
            + " | ".join(terms) + " | u | sd(u) | s per ns |\n|" + "---|" * (len(terms) + 6))
    print("\n" + head + "\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
