"""The log-weight spread σ of runs and evaluations drawn before ``evaluate`` recorded it.

    python bench/log_w_spread.py runs/ft-kl-3600/eval-test runs/tic-0.4ns/eval-test
    python bench/log_w_spread.py runs/md-fit/long-3400

An argument is a run directory (its ``samples.npz``) or a transferable evaluation directory
(one ``PEPTIDE/samples.npz`` each). Prints, per argument: the number of sample sets, σ
(:func:`boltzflow.sampling.log_weight_spread`: 84th percentile − median of the finite
log-weights; median and range over peptides), the ESS ``exp(−σ²)`` that Gaussian log-weights
of the median σ would give, and the median Kish effective-sample count recorded in
``metrics.json``. σ ranks models whose ESS is a handful of samples, where the ESS of one draw
is noise: a 10 % ESS needs σ ≲ 1.5, 15 % σ ≲ 1.38, 40 % σ ≲ 0.96.

σ is the one ``evaluate`` recorded (invalid samples at zero weight, as in its ESS);
``--as-sampled`` recomputes it from ``samples.npz``, invalid samples included (the numbers of
``docs/benchmarks.md`` before the "Denser frames" table).

``--terms`` adds, per argument, where the spread sits: for each force-field term the median
over the sample sets of its ``energy_terms`` entry in ``metrics.json`` (``evaluate`` writes it,
:func:`boltzflow.analysis.molecular.energy_term_sources`): the share of the log-weight
variance a straight line in the term explains, the samples' mean minus MD's (kT), and the
samples' sd over MD's.

    python bench/log_w_spread.py --terms runs/tic-dense-kl/eval-side-10000
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch

from boltzflow.sampling import log_weight_spread


def spreads(where: Path, as_sampled: bool = False) -> tuple[list[float], list[float]]:
    """σ and the recorded effective-sample counts of every sample set under ``where``.

    σ is the one ``evaluate`` recorded in ``metrics.json`` where it did: there, invalid
    samples (wrong chirality, broken bonds) weigh zero, as in the ESS beside it. A
    ``samples.npz`` holds the weights as sampled, invalid samples included, so σ from it (for
    runs evaluated before ``log_w_spread`` was recorded, or with ``as_sampled``) can be wider."""
    files = [where / "samples.npz"] if (where / "samples.npz").exists() else sorted(
        where.glob("*/samples.npz"))
    sigma, ess = [], []
    for f in files:
        metrics = f.parent / "metrics.json"
        m = json.loads(metrics.read_text()) if metrics.exists() else {}
        recorded = m.get("log_w_spread")
        sigma.append(float(recorded) if recorded is not None and not as_sampled
                     else log_weight_spread(torch.from_numpy(np.load(f)["log_w"])))
        if "ess_samples" in m:
            ess.append(float(m["ess_samples"]))
    return sigma, ess


def term_table(where: Path) -> list[str]:
    """Markdown rows: per force-field term, medians (and the share's range) over the sample
    sets under ``where`` of the ``energy_terms`` their ``metrics.json`` holds."""
    terms: dict[str, list[dict]] = {}
    for f in sorted(where.glob("*/metrics.json")) or [where / "metrics.json"]:
        if f.exists():
            for t in json.loads(f.read_text()).get("energy_terms") or []:
                terms.setdefault(t["term"], []).append(t)
    rows = []
    for name, entries in terms.items():
        share = [t["share"] for t in entries]
        excess = np.median([t["model_mean"] - t["md_mean"] for t in entries])
        ratio = np.median([t["model_sd"] / t["md_sd"] for t in entries])
        rows.append(f"| {where} | {name} | {np.median(share):.2f} ({min(share):.2f}–"
                    f"{max(share):.2f}) | {excess:+.1f} | {ratio:.2f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path)
    parser.add_argument("--terms", action="store_true",
                        help="also where the spread sits, per force-field term")
    parser.add_argument("--as-sampled", action="store_true",
                        help="σ of the weights as sampled (samples.npz, invalid samples "
                             "included), not the one evaluate recorded")
    args = parser.parse_args()
    print("| samples of | sets | σ median (range), nats | exp(−σ²) | ESS n median |")
    print("|---|---|---|---|---|")
    for where in args.dirs:
        sigma, ess = spreads(where, args.as_sampled)
        if not sigma:
            print(f"| {where} | 0 | – | – | – |")
            continue
        med = float(np.median(sigma))
        span = f" ({min(sigma):.2f}–{max(sigma):.2f})" if len(sigma) > 1 else ""
        count = f"{np.median(ess):.1f}" if ess else "–"
        print(f"| {where} | {len(sigma)} | {med:.2f}{span} | {math.exp(-med ** 2):.2%} | {count} |")
    if args.terms:
        print("\n| samples of | term | share of var log w, median (range) | mean − MD's (kT) "
              "| sd / MD's |\n|---|---|---|---|---|")
        for where in args.dirs:
            print("\n".join(term_table(where)))


if __name__ == "__main__":
    main()
