"""Held-out evaluations of transferable models side by side, one row each.

    python bench/compare_evals.py runs/tic-dense-kl/eval-side-10000 \\
        runs/bench-tbg-ic-side/eval-side-10000

An argument is a split evaluation directory (one ``PEPTIDE/metrics.json`` each, as
``bench/transferable.py`` and ``boltzflow evaluate-split`` write). Per argument, over its
peptides: σ (the log-weight spread ``evaluate`` records, invalid samples at zero weight;
median and range), the Kish effective-sample count (mean and range) and the mean ESS, the
valid fraction (mean), the samples more than 20 kT above MD's highest energy (median), the
energy W2 (raw median, reweighted mean, kT), the peptides whose reweighted torsion W2 is below
the raw one, and on how many of the peptides both hold σ is narrower than in the first
argument.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def load(where: Path) -> dict[str, dict]:
    """``metrics.json`` of each peptide under ``where``, by directory name."""
    found = {f.parent.name: json.loads(f.read_text()) for f in sorted(where.glob("*/metrics.json"))}
    if not found:
        raise SystemExit(f"{where}: no PEPTIDE/metrics.json (a split evaluation directory?)")
    return found


def _values(metrics: dict[str, dict], key: str) -> list[float]:
    return [float(m[key]) for m in metrics.values() if m.get(key) is not None]


def row(where: Path, metrics: dict[str, dict], first: dict[str, dict] | None) -> str:
    sigma = _values(metrics, "log_w_spread")
    count = _values(metrics, "ess_samples")
    ess = _values(metrics, "ess")
    valid = _values(metrics, "fraction_valid")
    high = _values(metrics, "n_high_energy")
    e_raw, e_rw = _values(metrics, "energy_w2_model"), _values(metrics, "energy_w2_reweighted")
    t_better = sum(m["torus_w2_reweighted"] < m["torus_w2_model"] for m in metrics.values()
                   if m.get("torus_w2_reweighted") is not None
                   and m.get("torus_w2_model") is not None)
    if first is None:
        narrower = "–"
    else:
        both = [k for k in metrics if k in first and metrics[k].get("log_w_spread") is not None
                and first[k].get("log_w_spread") is not None]
        k = sum(metrics[p]["log_w_spread"] < first[p]["log_w_spread"] for p in both)
        narrower = f"{k} of {len(both)}"

    def med_range(v: list[float]) -> str:
        return f"{np.median(v):.2f} ({min(v):.2f}–{max(v):.2f})" if v else "–"

    def mean_range(v: list[float]) -> str:
        return f"{np.mean(v):.1f} ({min(v):.1f}–{max(v):.1f})" if v else "–"

    def fmt(v: list[float], how, spec: str) -> str:
        return format(how(v), spec) if v else "–"

    return (f"| {where} | {len(metrics)} | {med_range(sigma)} | {mean_range(count)} | "
            f"{fmt(ess, np.mean, '.2%')} | {fmt(valid, np.mean, '.1%')} | "
            f"{fmt(high, np.median, ',.0f')} | {fmt(e_raw, np.median, '.0f')} / "
            f"{fmt(e_rw, np.mean, '.1f')} | {t_better} of {len(metrics)} | {narrower} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path)
    args = parser.parse_args()
    print("| evaluation | peptides | σ median (range), nats | effective samples, mean (range) "
          "| ESS mean | valid | samples > MD's highest + 20 kT, median "
          "| E-W2 raw median / rw mean (kT) | T-W2 rw < raw | σ narrower than the first |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    first = None
    for where in args.dirs:
        metrics = load(where)
        print(row(where, metrics, first))
        first = metrics if first is None else first


if __name__ == "__main__":
    main()
