"""How strongly pairs of free torsions depend on each other, in MD and in a run's samples.

Mutual information (nats, 24 × 24 bins on the circle) of every pair of free heavy-atom torsions
of the run's molecule, in its MD training frames (every fifth), in its samples and in its
samples reweighted; pairs above 0.05 nats in either are printed. A coupling flow whose masks
keep two torsions in one group in every layer cannot make one depend on the other: the
measurement behind ``internal.torsion_masks`` (docs/benchmarks.md, "Torsion masks").

    .venv/bin/python bench/torsion_pairs.py --run runs/bench-molecules-v4/peptide-ACE-TRP-GLY-NME
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import torch

from boltzflow import runs
from boltzflow.transforms import InternalCoordinates, build_zmatrix
from boltzflow.transforms.ic_normalization import rigid_torsions


def mutual_information(a: np.ndarray, b: np.ndarray, w: np.ndarray | None = None,
                       bins: int = 24) -> float:
    """Mutual information of two angle samples (radians) on a ``bins × bins`` histogram."""
    h, _, _ = np.histogram2d(a, b, bins=bins, range=[[-np.pi, np.pi]] * 2, weights=w)
    p = h / h.sum() + 1e-12
    return float((p * np.log(p / (p.sum(1, keepdims=True) * p.sum(0, keepdims=True)))).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--data", type=Path, help="the run whose data.npz holds the MD frames "
                        "(default: --run)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    system = runs.load_run(args.run).system
    top = system.topology
    ic = InternalCoordinates(build_zmatrix(top, ring_closures=True))
    free = ic.torsion_indices[~rigid_torsions(ic, top, rings=True)].tolist()
    first = int(ic.torsion_indices[0])
    atoms = list(top.atoms)
    rows = {t: ic.zmatrix.rows[3 + t - first].tolist() for t in free}
    heavy = [t for t in free if atoms[rows[t][0]].element.symbol != "H"]
    name = {t: "-".join(f"{atoms[i].residue.name}{atoms[i].residue.index}:{atoms[i].name}"
                        if k == 0 else atoms[i].name for k, i in enumerate(rows[t]))
            for t in heavy}
    samples = np.load(args.run / "samples.npz")
    md = np.load((args.data or args.run) / "data.npz")["train"][::5]
    z_model = ic.inverse(torch.as_tensor(samples["x"]).double())[0].numpy()
    z_md = ic.inverse(torch.as_tensor(md).double())[0].numpy()
    log_w = samples["log_w"]
    ok = np.isfinite(log_w)
    w = np.where(ok, np.exp(log_w - log_w[ok].max()), 0.0)
    print(f"{args.run}: {len(md)} MD frames, {len(log_w)} samples\n")
    print("| torsion | torsion | MI MD | MI model | MI reweighted |")
    print("|---|---|---|---|---|")
    for s, t in itertools.combinations(heavy, 2):
        m = mutual_information(z_md[:, s], z_md[:, t])
        f = mutual_information(z_model[:, s], z_model[:, t])
        if max(m, f) > 0.05:
            r = mutual_information(z_model[:, s], z_model[:, t], w)
            print(f"| {name[s]} | {name[t]} | {m:.3f} | {f:.3f} | {r:.3f} |")


if __name__ == "__main__":
    main()
