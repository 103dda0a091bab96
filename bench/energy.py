"""Benchmark: energy + force throughput of TorchForceField (batched) vs OpenMM (per configuration).

System ``aldp-implicit`` (ACE-ALA-NME, amber99sb-ildn, native GBSAOBCForce, no cutoff), batches
of minimized positions plus 0.01 nm Gaussian noise. Torch rows evaluate the whole batch with
``energy_and_force`` (chunked internally); OpenMM rows loop over the configurations with one
Context: ``setPositions`` + ``getState(getEnergy=True, getForces=True)``. Each cell is the best
of ``--repeats`` runs (configurations per second, higher is better).

    .venv/bin/python bench/energy.py                   # 1 thread, batches of 1,000 and 10,000
    .venv/bin/python bench/energy.py --device cuda     # torch rows on a GPU as well
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import torch

from boltzflow import systems
from boltzflow.energies import OpenMMEnergy, TorchForceField


def best_rate(fn: Callable[[], object], n: int, repeats: int, sync: bool = False) -> float:
    """Best configurations/s of ``repeats`` calls of ``fn`` that each evaluate ``n``."""
    times = []
    for _ in range(repeats):
        if sync:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if sync:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return n / min(times)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch and OpenMM CPU threads")
    parser.add_argument("--batches", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="device of the torch rows")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    target = systems.get("aldp-implicit")
    system, temperature = target.openmm_system, target.temperature
    ff = TorchForceField(system, temperature)
    gen = torch.Generator().manual_seed(0)
    base = target.positions.to(torch.float64)
    noise = torch.randn(max(args.batches), *base.shape, generator=gen, dtype=torch.float64)
    x_all = base + 0.01 * noise

    rows: dict[str, dict[int, float]] = {}
    devices = ["cpu"] + ([args.device] if args.device != "cpu" else [])
    for device in devices:
        ff_dev = ff.to(device)
        for dtype in (torch.float32, torch.float64):
            name = f"TorchForceField {str(dtype).split('.')[1]} ({device}, batched)"
            for n in args.batches:
                x = x_all[:n].to(device, dtype)
                ff_dev.energy_and_force(x[:100])  # warm-up
                call = partial(ff_dev.energy_and_force, x)
                rows.setdefault(name, {})[n] = best_rate(call, n, args.repeats, device != "cpu")
    for platform in ("Reference", "CPU"):
        run = openmm_loop(system, platform, args.threads)
        name = f"OpenMM {platform} (per configuration)"
        for n in args.batches:
            xs = x_all[:n].numpy()
            run(xs[:10])
            rows.setdefault(name, {})[n] = best_rate(partial(run, xs), n, args.repeats)
    bridge = OpenMMEnergy(system, temperature, platform="Reference")
    for n in args.batches:
        x = x_all[:n]
        bridge.energy_and_force(x[:10])
        rate = best_rate(partial(bridge.energy_and_force, x), n, args.repeats)
        rows.setdefault("OpenMMEnergy bridge (Reference)", {})[n] = rate

    print(
        f"\naldp-implicit ({ff.n_atoms} atoms, amber99sb-ildn + OBC2 GBSAOBCForce), energy + "
        f"forces, {args.threads} thread(s), configurations/s (best of {args.repeats})\n"
    )
    header = "| method | " + " | ".join(f"batch {n:,}" for n in args.batches) + " |"
    print(header)
    print("|---|" + "---:|" * len(args.batches))
    for name, rates in rows.items():
        print(f"| {name} | " + " | ".join(f"{rates[n]:,.0f}" for n in args.batches) + " |")


if __name__ == "__main__":
    main()
