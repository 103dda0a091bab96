"""Benchmark: fine-tune a trained ``tbg-ic`` run for more steps, with or without the reverse KL
on the training peptides' energies, and evaluate the held-out split (the A/B that decides
whether the energy term stays: issue 15 keeps it only if it helps held-out ESS).

    python bench/finetune_tbg_ic.py --from runs/bench-tbg-ic-v2 --out runs/ft-nll --steps 2600
    python bench/finetune_tbg_ic.py --from runs/bench-tbg-ic-v2 --out runs/ft-kl --steps 2600 --w-kl 1

Both continue the same checkpoint with the same learning-rate schedule (cosine over
``--steps``); prints the held-out table and the training time.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import torch

from boltzflow import runs
from boltzflow.analysis.split import format_table
from boltzflow.models import parse_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="source", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, required=True, help="total steps (≥ the source's)")
    parser.add_argument("--w-kl", type=float, default=0.0)
    parser.add_argument("--kl-peptides", type=int, default=4)
    parser.add_argument("--kl-samples", type=int, default=16)
    parser.add_argument("-n", "--n-samples", type=int, default=1000, help="per held-out peptide")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if not args.out.exists():
        shutil.copytree(args.source, args.out, ignore=shutil.ignore_patterns(
            "eval-*", "refine-bench*", "systems"))
    config = runs.read_run_config(args.out).to_dict()
    config["train"]["steps"] = args.steps
    config["tbg-ic"].update(w_kl=args.w_kl, kl_peptides=args.kl_peptides,
                            kl_samples=args.kl_samples)
    t0 = time.perf_counter()
    runs.train(parse_config(config, source="finetune"), args.out, progress=True)
    seconds = time.perf_counter() - t0
    run = runs.load_run(args.out)
    result = runs.evaluate_split(run, "test", n_samples=args.n_samples, echo=print)
    print(format_table(result.rows, result.means))
    print(f"fine-tuning to step {args.steps} (w_kl {args.w_kl:g}): {seconds:.0f} s this call")


if __name__ == "__main__":
    main()
