"""Benchmark: one likelihood training step with eager and with compiled spline kernels.

Loads a trained ``internal`` run, and for each ``--batch`` times ``log q`` of that many of its
MD frames plus the backward pass (what a likelihood / log-weight-variance step costs) with the
eager kernels and inside :func:`boltzflow.transforms.splines.compiled_splines`
(``train.compile``); prints the first compiled step (it compiles), the
per-step times side by side and the largest differences of ``log q`` and of the parameters'
gradients between the two.

    .venv/bin/python bench/compiled_splines.py --run runs/demo --batch 256 512
"""

from __future__ import annotations

import argparse
import time

import torch

from boltzflow import runs
from boltzflow.data import Dataset
from boltzflow.threads import set_threads
from boltzflow.transforms.splines import compiled_splines


def gradients(flow, x: torch.Tensor) -> list[torch.Tensor]:
    """The parameters' gradients of ``−mean log q(x)``."""
    flow.zero_grad()
    (-flow.log_prob(x).mean()).backward()
    return [p.grad.clone() for p in flow.parameters()]


def step_ms(flow, x: torch.Tensor, repeats: int) -> tuple[float, float]:
    """Wall seconds of the first ``log q(x)`` + backward and mean milliseconds of the next
    ``repeats``."""
    def step():
        flow.zero_grad()
        (-flow.log_prob(x).mean()).backward()
    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(repeats):
        step()
    return first, (time.perf_counter() - t0) / repeats * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a trained internal-coordinate run")
    parser.add_argument("--batch", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    set_threads(args.threads)
    run = runs.load_run(args.run)
    flow = run.model.flow_for(run.system)
    frames = torch.as_tensor(Dataset.load(run.config.system.data).positions[:max(args.batch)])
    print(f"run {args.run} ({run.system.id}), {args.threads} threads, {args.repeats} steps each\n")
    print("| batch | eager (ms/step) | compiled (ms/step) | speed-up | first compiled step (s) "
          "| max Δ log q | max relative Δ gradient |")
    print("|---|---|---|---|---|---|---|")
    for b in args.batch:
        x = frames[:b].float()
        eager = step_ms(flow, x, args.repeats)[1]
        lq_eager, g_eager = flow.log_prob(x).detach(), gradients(flow, x)
        with compiled_splines():
            first, compiled = step_ms(flow, x, args.repeats)
            lq_compiled, g_compiled = flow.log_prob(x).detach(), gradients(flow, x)
        diff = float((lq_compiled - lq_eager).abs().max())
        grad = max(float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))
                   for a, b in zip(g_compiled, g_eager))
        print(f"| {b} | {eager:.1f} | {compiled:.1f} | {eager / compiled:.2f}× | {first:.0f} | "
              f"{diff:.1e} | {grad:.1e} |", flush=True)


if __name__ == "__main__":
    main()
