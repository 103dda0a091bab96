"""Benchmark: where one training step of a run's model spends its time, on the CPU or a GPU.

    python bench/profile_step.py --run runs/ft-kl-3600 --device cpu --w-kl 1
    python bench/profile_step.py --run .gpu/ft-kl-3600 --device cuda --w-kl 1   # GPU machine

Builds the run's model (its config; ``--w-kl``/``--kl-peptides``/``--kl-samples`` override the
tbg-ic energy term), warms up, then times ``--steps`` steps split into batch, loss and backward
(synchronized), counts the GPU kernels a step launches and prints the operators with the most
self CPU time (``torch.profiler``). A step whose time is mostly CPU time in many small operators
is launch-bound on a GPU: a faster GPU does not help it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from boltzflow import runs
from boltzflow.models import get_kind, parse_config
from boltzflow.training import distributed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--w-kl", type=float, default=None)
    parser.add_argument("--kl-peptides", type=int, default=None)
    parser.add_argument("--kl-samples", type=int, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = runs.read_run_config(args.run).to_dict()
    data["train"]["device"] = args.device
    for key in ("w_kl", "kl_peptides", "kl_samples"):
        if getattr(args, key) is not None:
            data[data["model"]][key] = getattr(args, key)
    config = parse_config(data, source="profile")
    kind = get_kind(config.model)
    distributed.init(args.device)
    model = kind.build(config, runs.training_set(config, args.run, None))
    model.to(distributed.device(args.device), torch.float32)
    module = model.module.train()
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)

    def step(i: int) -> dict[str, float]:
        times = {}
        t = time.perf_counter()
        batch = model.batch(i)
        sync()
        times["batch"] = time.perf_counter() - t
        t = time.perf_counter()
        parts = model.loss(batch, i)
        sync()
        times["loss"] = time.perf_counter() - t
        t = time.perf_counter()
        module.zero_grad(set_to_none=True)
        parts["loss"].backward()
        sync()
        times["backward"] = time.perf_counter() - t
        return times

    for i in range(2):  # warm-up (the energy term's targets are built and cached here)
        step(i)
    totals: dict[str, float] = {}
    for i in range(args.steps):
        for k, v in step(10 + i).items():
            totals[k] = totals.get(k, 0.0) + v / args.steps
    print(f"{config.model} on {args.device}: "
          + ", ".join(f"{k} {v:.3f} s" for k, v in totals.items())
          + f"; step {sum(totals.values()):.3f} s")

    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device == "cuda"
                                           else [])
    with profile(activities=activities) as prof:
        step(20)
    events = prof.key_averages()
    if args.device == "cuda":
        launches = sum(e.count for e in events if e.key in ("cudaLaunchKernel",
                                                            "cuLaunchKernel", "cudaLaunchKernelExC"))
        gpu = sum(getattr(e, "self_device_time_total", 0.0) for e in events) / 1e6
        print(f"kernel launches in one step: {launches}; GPU busy {gpu:.3f} s of the step")
    print(events.table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
