"""Benchmark: how much the Kish ESS of one trained flow moves from draw to draw.

Draws ``--n`` samples ``--draws`` times (seeds 1, 2, …) from a run's flow, and prints each
draw's Kish ESS with its 90 % interval (``sampling.effective_sample_size_interval``), the
largest normalized weight, the median and range over the draws, and the ESS of all draws
pooled (``draws × n`` samples); invalid molecules weigh 0, as in ``metrics.json``. The run
directory is only read. Several ``--run`` of one system (e.g. ``bench/md_fit.py``'s ``-seedK``
twins) draw from the equal mixture of their flows (:class:`boltzflow.distributions.Mixture`,
exact density, so the weights stay exact). ``--refine ais`` moves each draw's particles toward
the target by annealed importance sampling first (``boltzflow.sampling.refine``, its pilot
seeded by the draw; exact weights, no resampling), and the table adds the energy evaluations
per sample it cost.

    .venv/bin/python bench/ess_draws.py --run runs/demo --n 20000 --draws 5
    .venv/bin/python bench/ess_draws.py --run runs/a --run runs/b   # their mixture
    .venv/bin/python bench/ess_draws.py --run runs/demo --n 5000 --refine ais --levels 25
    .venv/bin/python bench/ess_draws.py --run runs/demo --save runs/demo/draws.npz  # keep log w
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from boltzflow import runs
from boltzflow.analysis import mask_invalid, validity
from boltzflow.distributions import Mixture
from boltzflow.sampling import draw, effective_sample_size_interval, largest_weight
from boltzflow.sampling.refine import RefineOptions, refine
from boltzflow.systems.molecule import MolecularSystem


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", required=True,
                        help="a trained run; repeated: the mixture of their flows")
    parser.add_argument("--n", type=int, default=20_000, help="samples per draw")
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--refine", choices=("none", "ais"), default="none",
                        help="ais: refine each draw by annealed importance sampling")
    parser.add_argument("--levels", type=int, default=25, help="with --refine ais")
    parser.add_argument("--mcmc-steps", type=int, default=2, help="with --refine ais: MALA moves per level")
    parser.add_argument("--save", help="write each draw's log-weights (invalid: -inf) to this .npz "
                        "(arrays draw1, draw2, …), to compare estimators on the same weights")
    args = parser.parse_args()
    loaded = [runs.load_run(r) for r in args.run]
    run = loaded[0]
    if any(r.system.id != run.system.id for r in loaded):
        parser.error("every --run must be of one system")
    if args.refine == "ais" and len(loaded) > 1:
        parser.error("--refine ais refines one flow's samples; give one --run")
    flows = [r.model.flow_for(r.system) for r in loaded]
    flow = flows[0] if len(flows) == 1 else Mixture(flows)
    energy = run.model.energy_of(run.system)
    what = args.run[0] if len(flows) == 1 else f"mixture of {len(flows)} flows ({', '.join(args.run)})"
    how = (f", each refined by AIS ({args.levels} levels × {args.mcmc_steps} MALA moves)"
           if args.refine == "ais" else "")
    print(f"run {what}: {args.draws} draws of {args.n} samples{how}\n")
    print("| draw (seed) | ESS | 90 % interval | ESS n | largest weight | tail index | evals/x | s |")
    print("|---|---|---|---|---|---|---|---|")
    values, pooled = [], []
    for seed in range(1, args.draws + 1):
        t0 = time.perf_counter()
        torch.manual_seed(seed)
        evals = 1.0
        if args.refine == "ais":
            options = RefineOptions(levels=args.levels, steps=args.mcmc_steps, seed=seed)
            result = refine(flow, energy, args.n, options)
            samples = result.samples
            evals = (result.info["energy_evaluations_per_sample"]
                     + result.info["energy_evaluations_pilot"] / args.n)
        else:
            samples = draw(flow, energy, args.n, batch_size=run.config.sample.batch_size)
        log_w = samples.log_w.double()
        if isinstance(run.system, MolecularSystem):
            log_w = mask_invalid(log_w, validity(samples.x.double(), run.system).valid)
        iv = effective_sample_size_interval(log_w, seed=seed)
        values.append(iv.ess)
        pooled.append(log_w)
        print(f"| {seed} | {iv.ess:.1%} | {iv.low:.1%}–{iv.high:.1%} | {iv.ess * args.n:.0f} | "
              f"{largest_weight(log_w):.3g} | {iv.tail_index:.2f} | {evals:.0f} | "
              f"{time.perf_counter() - t0:.0f} |", flush=True)
    print(f"\nmedian ESS {statistics.median(values):.1%}, range {min(values):.1%}–"
          f"{max(values):.1%} over {len(values)} draws")
    if args.save:
        import numpy as np

        np.savez_compressed(args.save, **{f"draw{i}": lw.numpy() for i, lw in enumerate(pooled, 1)})
    iv = effective_sample_size_interval(torch.cat(pooled), seed=0)
    n = len(values) * args.n
    print(f"pooled ({n} samples): ESS {iv.ess:.2%} ({iv.ess * n:.0f} effective; 90 % interval "
          f"{iv.low:.2%}–{iv.high:.2%}), tail index {iv.tail_index:.2f}")


if __name__ == "__main__":
    main()
