"""Benchmark: the transferable internal-coordinate flow (``tbg-ic``), zero-shot on held-out
dipeptides — training time, sampling time, and the per-peptide table of the transferable
evaluation (ESS and effective samples, valid, E-W2 and T-W2 raw/reweighted, ΔF vs MD).

The dataset comes from ``boltzflow dataset dipeptides`` (train and test splits in one
directory). Every phase resumes: training continues its checkpoint, the evaluation reuses the
per-peptide samples it already drew.

    boltzflow dataset dipeptides --out data/dipeptides-pilot --sequences AE,AG,…,AC,DW,… \\
        --ns 0.1 --frame-interval-ps 0.5 --equilibration-ps 20
    .venv/bin/python bench/transferable_ic.py --data data/dipeptides-pilot --steps 3000

Prints a Markdown table (also in ``RUN/eval-test/evaluation.md``) and the timing lines. A dataset
without test peptides (training peptides only) is evaluated afterwards against the references
shipped with the pretrained model: ``bench/transferable.py --model tbg-ic --run OUT``.
``--max-frames N`` trains on N evenly spaced frames per peptide, so one dense dataset also
stands for a sparser one of the same MD.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from boltzflow import runs, systems
from boltzflow.analysis.split import format_table
from boltzflow.data.dipeptides import load_index
from boltzflow.models import parse_config
from boltzflow.sampling import draw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="dipeptide dataset directory")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-tbg-ic"))
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("-n", "--n-samples", type=int, default=1000, help="per test peptide")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-frames", type=int, default=0,
                        help="evenly spaced frames per training peptide (0: all)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = parse_config({
        "model": "tbg-ic",
        "system": {"dataset": str(args.data), "max_frames": args.max_frames},
        "train": {"steps": args.steps, "batch_size": 128, "lr": 1e-3, "warmup": 100,
                  "checkpoint_every": 250},
        "sample": {"n_samples": args.n_samples},
        "tbg-ic": {"hidden": args.hidden, "n_layers": args.layers},
    }, source="bench")
    t0 = time.perf_counter()
    runs.train(config, args.out, progress=True)
    train_s = time.perf_counter() - t0
    run = runs.load_run(args.out)
    probe = systems.get("dipeptide:AC")
    t0 = time.perf_counter()
    draw(run.model.flow_for(probe), run.model.energy_of(probe), 2000, batch_size=2000)
    per_10k = (time.perf_counter() - t0) * 5
    timing = (f"training: {args.steps} steps, {train_s:.0f} s this call (the log's `time` column "
              f"holds the total); sampling 10,000 samples of AC with log q and energies: "
              f"{per_10k:.0f} s")
    if not load_index(args.data).sequences("test"):
        print(f"{timing}\n{args.data} holds no test peptides: evaluate with "
              f"`bench/transferable.py --model tbg-ic --run {args.out}`")
        return
    result = runs.evaluate_split(run, "test", n_samples=args.n_samples, echo=print)
    print(format_table(result.rows, result.means))
    print(f"{timing}; table: {result.table}")


if __name__ == "__main__":
    main()
