"""Does a ``tbg-ic`` model learn its training peptides' MD frames rather than their
distributions? NLL of the frames it was trained on against later MD of the same peptides.

Needs a dataset whose training peptides continue the model's training MD (built on a copy of
the training dataset with a larger ``--ns``, as ``data/dipeptides-0.4ns`` continues the pilot's
0.1 ns; docs/benchmarks.md):

    python bench/tbg_ic_gap.py --run runs/ft-kl-3600 --data data/dipeptides-0.4ns --seen 200

Prints, per training peptide, the mean NLL of its first ``--seen`` frames (the ones the model
trained on) and of the later frames (every ``--stride``-th), and their gap. A model trained with
``system.max_frames`` saw only that many evenly spaced frames of the first ``--seen``: pass the
same ``--max-frames`` and the seen column holds exactly those.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from boltzflow import runs, systems
from boltzflow.data.dipeptides.index import load_index
from boltzflow.models.tbg_ic import evenly_spaced


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a tbg-ic run directory")
    parser.add_argument("--data", type=Path, required=True, help="the longer dipeptide dataset")
    parser.add_argument("--seen", type=int, default=200, help="frames per peptide trained on")
    parser.add_argument("--stride", type=int, default=3, help="keep every n-th later frame")
    parser.add_argument("--max-frames", type=int, default=0,
                        help="the model's system.max_frames (0: it saw all --seen frames)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run = runs.load_run(args.run)
    index = load_index(args.data)
    print("| peptide | NLL seen frames | NLL later frames | gap (nats) |\n|---|---|---|---|")
    gaps = []
    for seq in index.sequences("train"):
        x = index.dataset(seq).positions.float()
        if len(x) <= args.seen:
            continue
        flow = run.model.flow_for(systems.get(f"dipeptide:{seq}"))
        with torch.no_grad():
            seen = -flow.log_prob(evenly_spaced(x[: args.seen], args.max_frames)).mean().item()
            later = -flow.log_prob(x[args.seen :: args.stride]).mean().item()
        gaps.append(later - seen)
        print(f"| {seq} | {seen:.1f} | {later:.1f} | {later - seen:.2f} |", flush=True)
    if gaps:
        print(f"\n{len(gaps)} peptides: gap median {np.median(gaps):.2f} nats, mean "
              f"{np.mean(gaps):.2f}, range {min(gaps):.2f} to {max(gaps):.2f}")


if __name__ == "__main__":
    main()
