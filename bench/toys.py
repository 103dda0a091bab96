"""Benchmark: classic coupling-flow Boltzmann generators on the particle toys dw4 and lj13.

Trains by maximum likelihood on MCMC reference data (plus reverse KL where stable), samples,
reweights, and prints a side-by-side table (ESS, clipped ESS, NLL, train and sample time).

    .venv/bin/python bench/toys.py            # full run (see docs/benchmarks.md)
    .venv/bin/python bench/toys.py --quick    # a smoke run in about a minute
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from boltzflow import runs
from boltzflow.models import parse_config

CASES = {
    # name: (system, coupling-section overrides)
    "dw4 / spline / NLL": ("dw4", {"w_kl": 0.0}),
    "dw4 / spline / NLL+KL": ("dw4", {"w_kl": 0.1}),
    "lj13 / spline / NLL": ("lj13", {"w_kl": 0.0}),
}


def case_config(system: str, overrides: dict, *, steps: int, n_samples: int, quick: bool):
    """The run configuration of one case (model ``coupling``, spline transform)."""
    return parse_config({
        "model": "coupling",
        "system": {"id": system, "n_data": 2000 if quick else 20_000,
                   "n_test": 1000 if quick else 5000},
        "train": {"steps": steps, "lr": 5e-4, "batch_size": 256},
        "sample": {"n_samples": n_samples},
        "coupling": {"transform": "spline", "n_layers": 8, "hidden": [128, 128], "n_bins": 8,
                     "bound": 5.0, "kl_batch_size": 256, **overrides},
    }, source="bench/toys.py")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-toys"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="few steps, small data")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    steps = 100 if args.quick else args.steps
    n_samples = 2000 if args.quick else args.samples

    rows = []
    for name, (system, overrides) in CASES.items():
        cfg = case_config(system, overrides, steps=steps, n_samples=n_samples, quick=args.quick)
        out = args.out / name.replace(" / ", "-").replace("+", "-")
        t0 = time.perf_counter()
        run = runs.train(cfg, out, progress=False)
        t_train = time.perf_counter() - t0
        t0 = time.perf_counter()
        runs.sample(run, n_samples, progress=False)
        t_sample = time.perf_counter() - t0
        m = runs.evaluate(run, plots=True)
        rows.append((name, steps, m["ess"], m["ess_clipped"], m.get("nll"), t_train, t_sample))
        print(json.dumps({"case": name, **m}), flush=True)

    header = f"| case | steps | ESS | ESS clipped (0.2 %) | NLL (nats) | train (s) | sample {n_samples} (s) |"
    print()
    print(header)
    print("|---|---|---|---|---|---|---|")
    for name, st, ess, essc, nll, tt, ts in rows:
        print(f"| {name} | {st} | {ess:.3f} | {essc:.3f} | {nll:.3f} | {tt:.0f} | {ts:.1f} |")


if __name__ == "__main__":
    main()
