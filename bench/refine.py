"""Plain reweighting vs AIS vs SMC at equal numbers of energy evaluations.

For a trained single-system run (default: the demo's, ``runs/demo``), every row spends the same
kind of budget: ``evals/x`` energy (+ force) evaluations per final sample. Plain reweighting
with the same budget draws ``evals/x`` times as many flow samples, so the fair comparison is the
count of effective samples (ESS n) and the ΔF error bar per energy evaluation, printed side by
side with the ESS fraction.

    python bench/refine.py --run runs/demo                 # the quick demo flow
    python bench/refine.py --run runs/demo-quality -n 2000 # the quality flow
    python bench/refine.py --run runs/bench-tbg-ic --system dipeptide:AC --system dipeptide:NY
                                                           # held-out peptides, transferable run

Prints a Markdown table (also written to ``RUN/refine-bench.md``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from boltzflow import runs
from boltzflow.analysis.evaluate import evaluate_samples
from boltzflow.sampling import draw
from boltzflow.sampling.refine import RefineOptions, refine

#: (label, options) of the refined rows.
ROWS = (
    ("AIS K=10 × 2", RefineOptions(levels=10, steps=2)),
    ("AIS K=25 × 2", RefineOptions(levels=25, steps=2)),
    ("AIS K=24 × 4", RefineOptions(levels=24, steps=4)),
    ("SMC K=25 × 2", RefineOptions(method="smc", levels=25, steps=2)),
)


def row(run: runs.Run, system, label: str, samples, evals: float, seconds: float, out: Path,
        md: torch.Tensor | None) -> str:
    """One table row: ESS, ESS n, ΔF(φ) with its error, vs MD."""
    m = evaluate_samples(run.model, system, samples, out, reference=md, plots=False).metrics
    df = m.get("dF_phi_reweighted")
    shown = "–" if df is None else f"{df:.2f} ± {m['dF_phi_reweighted_stderr']:.2f}"
    md = m.get("dF_phi_md")
    return (f"| {system.id} | {label} | {len(samples)} | {evals:.0f} | {m['ess']:.1%} | {m['ess_samples']:.0f} | "
            f"{shown} | {'–' if md is None else f'{md:.2f}'} | {seconds:.0f} |")


def reference(run: runs.Run) -> torch.Tensor | None:
    """The run's MD frames (train + test) for the ΔF of MD."""
    import numpy as np

    path = run.path / runs.DATA_NAME
    if not path.exists():
        return None
    data = np.load(path)
    return torch.from_numpy(np.concatenate([data["train"], data["test"]]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/demo"), help="A trained run.")
    parser.add_argument("--system", action="append", default=None,
                        help="A molecule of a transferable run (repeat for several).")
    parser.add_argument("-n", type=int, default=2000, help="Particles of each refined row.")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from boltzflow import systems

    run = runs.load_run(args.run)
    if run.model.refine_unsupported:
        raise SystemExit(f"{args.run}: {run.model.refine_unsupported}")
    targets = [systems.get(s) for s in args.system] if args.system else [run.system]
    scratch = args.run / "refine-bench"
    scratch.mkdir(exist_ok=True)
    lines = [
        f"Refinement of `{args.run}` ({run.model.describe()}); {args.n} particles per refined "
        "row, plain rows with the same energy evaluations.",
        "",
        "| system | method | samples | evals/x | ESS | ESS n | ΔF(φ>0 − φ<0) rw (kT) | ΔF MD | s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for system in targets:
        md = reference(run) if system is run.system else runs.reference_frames(run, system, None)
        flow, energy = run.model.flow_for(system), run.model.energy_of(system)
        torch.manual_seed(0)
        t0 = time.perf_counter()
        plain = draw(flow, energy, args.n, batch_size=10_000)
        lines.append(row(run, system, "plain reweighting", plain, 1, time.perf_counter() - t0,
                         scratch, md))
        print(lines[-1], flush=True)
        for label, options in ROWS:
            t0 = time.perf_counter()
            result = refine(flow, energy, args.n, options)
            seconds = time.perf_counter() - t0
            evals = result.info["energy_evaluations_per_sample"] + \
                result.info["energy_evaluations_pilot"] / args.n
            shown = label
            if "n_lineages" in result.info:  # after resampling the ESS counts the last epoch only
                shown += (f" ({result.info['n_resamplings']} resamplings, "
                          f"{result.info['n_lineages']} lineages)")
            lines.append(row(run, system, shown, result.samples, evals, seconds, scratch, md))
            print(lines[-1], flush=True)
            torch.manual_seed(1)
            t0 = time.perf_counter()
            same = draw(flow, energy, int(args.n * evals), batch_size=10_000)
            lines.append(row(run, system, f"plain, same evals as {label}", same, evals,
                             time.perf_counter() - t0, scratch, md))
            print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    (args.run / "refine-bench.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
