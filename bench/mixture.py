"""Benchmark: the ESS of an equal mixture of independently trained flows as the proposal.

Each of ``--run`` is a trained run of the same system (e.g. ``bench/md_fit.py``'s ``-seedK``
twins); the proposal is :class:`boltzflow.distributions.Mixture` of their flows, whose density
is exact, so the weights stay exact. Draws ``--n`` samples ``--draws`` times (seeds 1, 2, …)
and prints each draw's Kish ESS, as ``bench/ess_draws.py`` does for one flow, then the median
and the pooled ESS; invalid molecules weigh 0. The run directories are only read.

    .venv/bin/python bench/mixture.py --run runs/a --run runs/b --n 20000 --draws 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from boltzflow import runs
from boltzflow.analysis import mask_invalid, validity
from boltzflow.distributions import Mixture
from boltzflow.sampling import (
    draw,
    effective_sample_size_interval,
    largest_weight,
    log_weight_spread,
)
from boltzflow.systems.molecule import MolecularSystem


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", required=True, help="a trained run (repeat)")
    parser.add_argument("--n", type=int, default=20_000, help="samples per draw")
    parser.add_argument("--draws", type=int, default=5)
    args = parser.parse_args()
    loaded = [runs.load_run(r) for r in args.run]
    system = loaded[0].system
    if any(r.system.id != system.id for r in loaded):
        parser.error("every --run must be of one system")
    proposal = Mixture([r.model.flow_for(r.system) for r in loaded])
    energy = loaded[0].model.energy_of(system)
    print(f"mixture of {len(loaded)} flows ({', '.join(args.run)}): {args.draws} draws of "
          f"{args.n} samples\n")
    print("| draw (seed) | ESS | 90 % interval | ESS n | largest weight | tail index | σ | s |")
    print("|---|---|---|---|---|---|---|---|")
    values, pooled = [], []
    for seed in range(1, args.draws + 1):
        t0 = time.perf_counter()
        torch.manual_seed(seed)
        samples = draw(proposal, energy, args.n, batch_size=loaded[0].config.sample.batch_size)
        log_w = samples.log_w.double()
        if isinstance(system, MolecularSystem):
            log_w = mask_invalid(log_w, validity(samples.x.double(), system).valid)
        iv = effective_sample_size_interval(log_w, seed=seed)
        values.append(iv.ess)
        pooled.append(log_w)
        print(f"| {seed} | {iv.ess:.1%} | {iv.low:.1%}–{iv.high:.1%} | {iv.ess * args.n:.0f} | "
              f"{largest_weight(log_w):.3g} | {iv.tail_index:.2f} | "
              f"{log_weight_spread(samples.log_w):.2f} | {time.perf_counter() - t0:.0f} |",
              flush=True)
    print(f"\nmedian ESS {statistics.median(values):.1%}, range {min(values):.1%}–"
          f"{max(values):.1%} over {len(values)} draws")
    iv = effective_sample_size_interval(torch.cat(pooled), seed=0)
    n = len(values) * args.n
    print(f"pooled ({n} samples): ESS {iv.ess:.2%} ({iv.ess * n:.0f} effective; 90 % interval "
          f"{iv.low:.2%}–{iv.high:.2%}), tail index {iv.tail_index:.2f}")


if __name__ == "__main__":
    main()
