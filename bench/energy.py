"""Benchmark: energy + force throughput of TorchForceField (batched) vs OpenMM (per configuration).

System ``aldp-implicit`` (ACE-ALA-NME, amber99sb-ildn, native GBSAOBCForce, no cutoff), batches
of minimized positions plus 0.01 nm Gaussian noise. Torch rows evaluate the whole batch with
``energy_and_force`` (chunked internally); OpenMM rows loop over the configurations with one
Context: ``setPositions`` + ``getState(getEnergy=True, getForces=True)``, on the Reference
platform (always single-threaded) and on the CPU platform with ``Threads`` set to the thread
count of the table. Every repeat runs every row once, round-robin, so that a change of machine
load hits all rows alike; each cell is the best of ``--repeats`` (configurations per second,
higher is better). The last line of each table is the target ratio: TorchForceField float32 over
the fastest OpenMM per-configuration row, at the largest batch.

    .venv/bin/python bench/energy.py                     # 1 and 2 threads, batches 1,000, 10,000
    .venv/bin/python bench/energy.py --threads 1         # one table
    .venv/bin/python bench/energy.py --device cuda       # torch rows on a GPU as well
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np
import torch

from boltzflow import systems
from boltzflow.energies import OpenMMEnergy, TorchForceField


def openmm_loop(system, platform: str, threads: int) -> Callable[[np.ndarray], None]:
    """Energy + forces of each configuration with one OpenMM Context of ``platform``."""
    import openmm

    props = {"Threads": str(threads)} if platform == "CPU" else {}
    context = openmm.Context(
        system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(platform), props
    )

    def run(xs: np.ndarray) -> None:
        for pos in xs:
            context.setPositions(pos)
            state = context.getState(getEnergy=True, getForces=True)
            state.getPotentialEnergy()
            state.getForces(asNumpy=True)

    return run


def load() -> str:
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def table(target, x_all: torch.Tensor, threads: int, args) -> None:
    """Time every row round-robin and print one table for ``threads`` threads."""
    torch.set_num_threads(threads)
    system, temperature = target.openmm_system, target.temperature
    ff = TorchForceField(system, temperature)
    rows: dict[str, tuple[Callable[[int], Callable[[], object]], bool]] = {}
    devices = ["cpu"] + ([args.device] if args.device != "cpu" else [])
    for device in devices:
        ff_dev = ff if device == "cpu" else TorchForceField(system, temperature).to(device)
        for dtype in (torch.float32, torch.float64):
            name = f"TorchForceField {str(dtype).split('.')[1]} ({device}, batched)"
            xs = {n: x_all[:n].to(device, dtype) for n in args.batches}
            ff_dev.energy_and_force(xs[args.batches[0]][:100])  # warm-up

            def make(n: int, ff_dev=ff_dev, xs=xs) -> Callable[[], object]:
                return lambda: ff_dev.energy_and_force(xs[n])

            rows[name] = (make, device != "cpu")
    for platform in ("Reference", "CPU"):
        run = openmm_loop(system, platform, threads)
        run(x_all[:10].numpy())
        suffix = "1 thread" if platform == "Reference" else f"{threads} thread(s)"
        rows[f"OpenMM {platform} (per configuration, {suffix})"] = (
            lambda n, run=run: lambda: run(x_all[:n].numpy()),
            False,
        )
    bridge = OpenMMEnergy(system, temperature, platform="Reference")
    bridge.energy_and_force(x_all[:10])
    rows["OpenMMEnergy bridge (Reference)"] = (
        lambda n: lambda: bridge.energy_and_force(x_all[:n]),
        False,
    )

    before = load()
    best = {name: {n: float("inf") for n in args.batches} for name in rows}
    for _ in range(args.repeats):
        for name, (make, sync) in rows.items():
            for n in args.batches:
                call = make(n)
                if sync:
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                call()
                if sync:
                    torch.cuda.synchronize()
                best[name][n] = min(best[name][n], time.perf_counter() - t0)
    after = load()

    print(
        f"\n{target.id} ({ff.n_atoms} atoms, amber99sb-ildn + OBC2 GBSAOBCForce), energy + forces, "
        f"torch threads = {threads}, configurations/s (best of {args.repeats}, round-robin); "
        f"{before} before, {after} after, on {os.cpu_count()} CPUs\n"
    )
    print("| method | " + " | ".join(f"batch {n:,}" for n in args.batches) + " |")
    print("|---|" + "---:|" * len(args.batches))
    for name, times in best.items():
        print(f"| {name} | " + " | ".join(f"{n / times[n]:,.0f}" for n in args.batches) + " |")
    n = args.batches[-1]
    torch_rate = n / best["TorchForceField float32 (cpu, batched)"][n]
    openmm_best = max(
        (n / times[n], name) for name, times in best.items() if name.startswith("OpenMM ")
    )
    print(
        f"\nbatch {n:,}: TorchForceField float32 = {torch_rate / openmm_best[0]:.2f} x "
        f"the fastest OpenMM per-configuration path ({openmm_best[1]})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batches", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu", help="device of extra torch rows")
    args = parser.parse_args()

    target = systems.get("aldp-implicit")
    gen = torch.Generator().manual_seed(0)
    base = target.positions.to(torch.float64)
    noise = torch.randn(max(args.batches), *base.shape, generator=gen, dtype=torch.float64)
    x_all = base + 0.01 * noise
    for threads in args.threads:
        table(target, x_all, threads, args)


if __name__ == "__main__":
    main()
