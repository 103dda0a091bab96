"""Do a ``tbg-ic`` model's chemistry keys come out the same at training and at sampling time?

A hydrogen's rigid torsion is keyed by the sign it has in the molecule's own structure
(key version 2, ``docs/transferable_ic.md``). Training fits the statistics with the keys of each
peptide's first MD frame; sampling computes them from the system's built structure. For a
torsion near ±π or 0 (aromatic and amide hydrogens) the sign is a coin toss between the two,
and a key the statistics lack falls back to a coarser one (``t:H-C-C-C:-``) whose mean can be
far from the coordinate's.

    python bench/tbg_ic_keys.py --data data/dipeptides-dense
    python bench/tbg_ic_keys.py --data data/dipeptides-dense --run runs/tic-dense-kl --peptide DW

Prints how many training peptides have coordinates whose key differs between their first frame
and their built structure, and which; with ``--run`` and ``--peptide``, the key each coordinate
of that peptide uses at sampling time where it is not its most specific one, with the mean and
spread the model normalizes it by.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import torch

from boltzflow import runs, systems
from boltzflow.data.dipeptides import load_index
from boltzflow.models.tbg_ic import describe_molecule, fitted_key, ic_vocabulary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a dipeptide dataset")
    parser.add_argument("--run", type=Path, default=None, help="a tbg-ic run")
    parser.add_argument("--peptide", default=None, help="with --run: a dipeptide, e.g. DW")
    parser.add_argument("--key-version", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    index = load_index(args.data)
    vocabulary = ic_vocabulary()
    changed, peptides, n = Counter(), 0, 0
    for seq in index.sequences("train"):
        system = systems.get(index.entry(seq).system_id)
        at = {}
        for name, positions in (("frame", index.dataset(seq).positions[0]),
                                ("built", system.positions)):
            at[name] = describe_molecule(system.topology, vocabulary, seq, True, True,
                                         args.key_version, positions=positions).keys
        diff = [a[0] for a, b in zip(at["frame"], at["built"], strict=True) if a[0] != b[0]]
        changed.update(k.rsplit(":", 1)[0] for k in diff)
        peptides += bool(diff)
        n += 1
    print(f"{peptides} of {n} training peptides of {args.data} have coordinates whose key differs "
          f"between their first MD frame and their built structure; {sum(changed.values())} "
          "coordinates in all:")
    for key, count in changed.most_common():
        print(f"  {count} × {key}")
    if args.run is not None and args.peptide:
        model = runs.load_run(args.run).model
        mol = model.molecule(systems.get(f"dipeptide:{args.peptide}"))
        print(f"\n{args.peptide} in {args.run}: coordinates normalized by a fallback key")
        for keys in mol.keys:
            used = fitted_key(keys, model.stats)
            if used != keys[0]:
                mean, spread = model.stats.get(used, [float("nan")] * 2)[:2]
                print(f"  {keys[0]} → {used} (mean {mean:.3f}, spread {spread:.3f})")


if __name__ == "__main__":
    main()
