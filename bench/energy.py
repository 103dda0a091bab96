"""Benchmark: energy + force throughput of TorchForceField (batched) vs OpenMM (per configuration).

Systems: ``aldp-implicit`` (ACE-ALA-NME, 22 atoms, amber99sb-ildn) and ``dipeptide:KE``
(Lys-Glu zwitterion, 40 atoms, amber14), both with OpenMM's native OBC2 ``GBSAOBCForce`` and no
cutoff; batches of minimized positions plus 0.01 nm Gaussian noise. What is timed is energy *and*
forces: torch rows call ``energy_and_force`` on the whole batch (analytic forces, chunked
internally), eager and with ``compile=True``; OpenMM rows loop over the configurations with one
Context, ``setPositions`` + ``getState(getEnergy=True, getForces=True)``, on the Reference platform
(single-threaded) and on the CPU platform with ``Threads`` = ``--threads``. A cell runs its batch
enough times to take ~1,000 configurations (batch 1: 1,000 calls). Every repeat runs every cell
once, round-robin, so that a change of machine load hits all rows alike; a cell is the best of
``--repeats``, in configurations per second, with its ratio to OpenMM Reference at the same batch.
The last columns are the parity with OpenMM Reference on 100 configurations: the largest
|ΔE| (kJ/mol) and the largest relative force error ‖ΔF‖/‖F‖.

    .venv/bin/python bench/energy.py                  # both systems, 1 thread, 3-6 minutes
    .venv/bin/python bench/energy.py --no-compile     # eager rows only
    .venv/bin/python bench/energy.py --device cuda    # torch rows on a GPU as well
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable

import numpy as np
import torch

from boltzflow import systems
from boltzflow.energies import OpenMMEnergy, TorchForceField

Row = Callable[[np.ndarray], object]  # evaluates energy + forces of a batch [n, N, 3] (nm)


def openmm_loop(system, platform: str, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """Energies (kJ/mol) and forces (kJ/mol/nm) of each configuration, one OpenMM Context."""
    import openmm

    props = {"Threads": str(threads)} if platform == "CPU" else {}
    context = openmm.Context(
        system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(platform), props
    )

    def run(xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        energies, forces = [], []
        for pos in xs:
            context.setPositions(pos)
            state = context.getState(getEnergy=True, getForces=True)
            energies.append(state.getPotentialEnergy()._value)
            forces.append(state.getForces(asNumpy=True)._value)
        return np.array(energies), np.array(forces)

    return run


def torch_row(ff: TorchForceField, dtype: torch.dtype, device: str) -> Row:
    """``ff.energy_and_force`` of a batch moved to ``device`` and ``dtype`` beforehand."""
    cache: dict[tuple, torch.Tensor] = {}

    def run(xs: np.ndarray) -> object:
        key = (xs.ctypes.data, xs.shape)
        if key not in cache:
            cache[key] = torch.from_numpy(xs).to(device, dtype)
        out = ff.energy_and_force(cache[key])
        if device != "cpu":
            torch.cuda.synchronize()
        return out

    return run


def parity(ff: TorchForceField, dtype: torch.dtype, device: str, xs: np.ndarray, ref) -> str:
    """``max |ΔE|`` (kJ/mol) and max relative force error against OpenMM Reference."""
    u, f = ff.energy_and_force(torch.from_numpy(xs).to(device, dtype))
    energy = u.double().cpu().numpy() * ff.kT
    force = f.double().cpu().numpy().reshape(len(xs), -1) * ff.kT
    ref_force = ref[1].reshape(len(xs), -1)
    rel = np.linalg.norm(force - ref_force, axis=1) / np.linalg.norm(ref_force, axis=1)
    return f"{np.abs(energy - ref[0]).max():.1e} | {rel.max():.1e}"


def rows_of(target, x_all: np.ndarray, args) -> tuple[dict[str, Row], dict[str, str]]:
    """The timed rows of one system, by name, and their parity cells."""
    system, temperature = target.openmm_system, target.temperature
    reference = openmm_loop(system, "Reference", 1)
    check = x_all[:100]
    ref = reference(check)
    rows: dict[str, Row] = {"OpenMM Reference (per configuration)": reference}
    cells = {"OpenMM Reference (per configuration)": "0 | 0"}
    devices = ["cpu"] + ([args.device] if args.device != "cpu" else [])
    for device in devices:
        for compiled in (False, True) if args.compile else (False,):
            ff = TorchForceField(system, temperature, compile=compiled).to(device)
            for dtype in (torch.float32, torch.float64):
                mode = "compiled" if compiled else "eager"
                name = f"TorchForceField {str(dtype).split('.')[1]} {mode} ({device})"
                t0 = time.perf_counter()
                cells[name] = parity(ff, dtype, device, check, ref)  # also compiles
                if compiled:
                    print(f"  {target.id}: {name} compiled in {time.perf_counter() - t0:.0f} s")
                rows[name] = torch_row(ff, dtype, device)
    rows[f"OpenMM CPU (per configuration, {args.threads} thread(s))"] = openmm_loop(
        system, "CPU", args.threads
    )
    bridge = OpenMMEnergy(system, temperature, platform="Reference")
    rows["OpenMMEnergy bridge (Reference)"] = lambda xs: bridge.energy_and_force(
        torch.from_numpy(xs)
    )
    return rows, cells


def measure(rows: dict[str, Row], x_all: np.ndarray, args) -> dict[str, dict[int, float]]:
    """Best configurations/s of every row and batch, round-robin over ``args.repeats``."""
    batches = {n: x_all[:n] for n in args.batches}
    for run in rows.values():  # warm-up (and the torch rows' device copies)
        for xs in batches.values():
            run(xs[:1]) if len(xs) > 1000 else run(xs)
    best = {name: dict.fromkeys(args.batches, math.inf) for name in rows}
    for _ in range(args.repeats):
        for name, run in rows.items():
            for n, xs in batches.items():
                calls = max(1, 1000 // n)
                t0 = time.perf_counter()
                for _ in range(calls):
                    run(xs)
                best[name][n] = min(best[name][n], (time.perf_counter() - t0) / calls)
    return {name: {n: n / t for n, t in times.items()} for name, times in best.items()}


def table(system_id: str, args) -> None:
    """Measure one system and print its table."""
    target = systems.get(system_id)
    gen = torch.Generator().manual_seed(0)
    base = target.positions.to(torch.float64)
    noise = torch.randn(max(args.batches), *base.shape, generator=gen, dtype=torch.float64)
    x_all = (base + 0.01 * noise).numpy()
    rows, cells = rows_of(target, x_all, args)
    before = load()
    rates = measure(rows, x_all, args)
    after = load()
    reference = rates["OpenMM Reference (per configuration)"]
    n_atoms = target.openmm_system.getNumParticles()
    print(
        f"\n{system_id} ({n_atoms} atoms, OBC2 GBSAOBCForce), energy + forces, configurations/s "
        f"and ratio to OpenMM Reference, {args.threads} thread(s), best of {args.repeats}; "
        f"{before} before, {after} after, on {os.cpu_count()} CPUs\n"
    )
    heads = [f"batch {n:,}" for n in args.batches] + ["max abs dE (kJ/mol)", "max rel dF"]
    print("| method | " + " | ".join(heads) + " |")
    print("|---|" + "---:|" * len(heads))
    for name, rate in rates.items():
        values = [f"{rate[n]:,.0f} ({rate[n] / reference[n]:.2f}×)" for n in args.batches]
        print(f"| {name} | " + " | ".join(values) + f" | {cells.get(name, '– | –')} |")


def load() -> str:
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", nargs="+", default=["aldp-implicit", "dipeptide:KE"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 100, 1000, 10_000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu", help="device of extra torch rows")
    parser.add_argument("--no-compile", dest="compile", action="store_false",
                        help="eager torch rows only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for system_id in args.systems:
        table(system_id, args)


if __name__ == "__main__":
    main()
