"""Where the transferable BG's samples lose energy: mean force-field terms of its valid samples
minus those of MD, per held-out peptide (kT), from a finished ``bench/transferable.py`` run.

    .venv/bin/python bench/tbg_energy_terms.py [--out runs/bench-tbg] [--preset cpu] [AC,NY,KI]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sequences", nargs="?", default=None, help="e.g. AC,NY,KI [all]")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-tbg"))
    parser.add_argument("--preset", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from boltzflow import systems
    from boltzflow.analysis.validity import validity
    from boltzflow.data.dipeptides import load_index
    from boltzflow.sampling import Samples

    index = load_index(args.out / "data")
    eval_dir = args.out / f"eval-{args.preset}"
    seqs = args.sequences.split(",") if args.sequences else sorted(
        p.name for p in eval_dir.iterdir() if (p / "samples.npz").exists()
    )
    rows = []
    for seq in seqs:
        system = systems.get(f"dipeptide:{seq}")
        x = Samples.load(eval_dir / seq / "samples.npz").x.to(torch.float64)
        rep = validity(x, system)
        keep = rep.bonds_ok & rep.chirality_ok
        md = index.dataset(seq).positions[::10].to(torch.float64)
        ff = system.energy.to(torch.float64)
        kt = 0.0083144626 * system.temperature  # kJ/mol per kT
        model, ref = ff.terms(x[keep]), ff.terms(md)
        rows.append((seq, int(keep.sum()), {k: float(model[k].mean() - ref[k].mean()) / kt
                                            for k in model}))
    names = list(rows[0][2])
    print("| peptide | valid samples | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for seq, n, d in rows:
        print(f"| {seq} | {n} | " + " | ".join(f"{d[k]:+.1f}" for k in names) + " |")


if __name__ == "__main__":
    main()
