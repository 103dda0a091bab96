"""The one-command path (``boltzflow demo --system MOLECULE --minutes M``) on alanine dipeptide
and capped peptides with proline and aromatic rings: one table of what a user gets.

    python bench/molecules.py                        # the default four, 30 min each
    python bench/molecules.py --system peptide:ACE-PRO-PHE-NME --minutes 25
    python bench/molecules.py --table                # the table of what has run so far
    python bench/molecules.py --system peptide:ACE-TRP-GLY-NME --seed 1   # another training seed

Each molecule runs into ``OUT/<slug>`` with :func:`boltzflow.demo.run_molecule` (plan from
measured speeds, parallel-tempering MD, training, 20,000 samples, report); rerunning resumes
it. Columns: ESS (unclipped Kish, fraction and count), ESS clipped, the log-weight spread σ
(`boltzflow.sampling.log_weight_spread`), valid fraction, the ring
closing bonds' widths (model / MD), energy and torsion W2 (raw model vs MD), ΔF(φ) reweighted
vs MD, high-energy samples, the AIS-refined samples' ESS and ΔF (``OUT/<slug>/ais``, where the
plan refined) and which of the two estimates the report says to use, wall time. The table goes
to stdout and ``OUT/molecules.md``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

from boltzflow import runs  # before torch: boltzflow sets the passive OpenMP wait, as the CLI
from boltzflow.demo import REFINED_DIR, preferred_estimate, run_molecule
from boltzflow.sampling import log_weight_spread
from boltzflow.threads import set_threads

#: (system, minutes): alanine dipeptide and three capped peptides with Pro, Phe, Trp, Tyr.
MOLECULES = (
    ("peptide:ACE-PRO-PHE-NME", 30.0),
    ("peptide:ACE-TRP-GLY-NME", 30.0),
    ("peptide:ACE-ALA-TYR-NME", 30.0),
    ("aldp-implicit", 30.0),
)


def run_dir(out: Path, system: str, seed: int) -> Path:
    """``OUT/<slug>``, or ``OUT/<slug>-seedN`` for another training seed."""
    return out / (runs.slug(system) + (f"-seed{seed}" if seed else ""))


def share_md(out: Path, system: str, seed: int) -> None:
    """Start a seed's run from the seed-0 run's plan and MD (copied, where it has them), so
    that the seeds differ only in training and sampling."""
    first, where = run_dir(out, system, 0), run_dir(out, system, seed)
    if not seed or where.exists() or not (first / "plan.json").exists():
        return
    where.mkdir(parents=True)
    shutil.copy2(first / "plan.json", where / "plan.json")
    if (first / "md").is_dir():
        shutil.copytree(first / "md", where / "md")


def run_one(system: str, minutes: float, out: Path, seed: int = 0) -> dict:
    """Run (or resume) one molecule; its metrics with the wall time and plan."""
    share_md(out, system, seed)
    where = run_dir(out, system, seed)
    t0 = time.perf_counter()
    run_molecule(system, where, minutes=minutes, seed=seed or None, progress=False)
    wall_path = where / "bench_wall.json"
    wall = json.loads(wall_path.read_text()) if wall_path.exists() else {"seconds": 0.0}
    wall["seconds"] += time.perf_counter() - t0  # resumed runs add up their sessions
    wall_path.write_text(json.dumps(wall))
    return collect(where)


def collect(where: Path) -> dict:
    """Metrics, plan and wall time of a molecule's run directory."""
    m = json.loads((where / "metrics.json").read_text())
    plan = json.loads((where / "plan.json").read_text())
    wall = where / "bench_wall.json"
    m["wall_seconds"] = json.loads(wall.read_text())["seconds"] if wall.exists() else None
    m["plan"] = plan
    refined = where / REFINED_DIR / "metrics.json"
    m["refined"] = json.loads(refined.read_text()) if refined.exists() else None
    if m.get("log_w_spread") is None:  # evaluated before evaluate recorded it
        import torch

        m["log_w_spread"] = log_weight_spread(torch.from_numpy(np.load(where / "samples.npz")["log_w"]))
    return m


def _f(value, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def refined_cells(m: dict) -> str:
    """``ESS (effective of n, evals/x) | ΔF(φ) | use`` of the AIS-refined samples (``–``
    where the plan did not refine); "use" is :func:`boltzflow.demo.preferred_estimate`."""
    r = m.get("refined")
    if r is None:
        return "– | – | –"
    return (f"{r['ess']:.1%} ({r['ess_samples']:.0f} of {r['n_samples']}, "
            f"{r['refine_energy_evaluations_per_sample']:.0f} evals/x) | "
            f"{_f(r.get('dF_phi_reweighted'), '.2f')} | {preferred_estimate(m, r) or '–'}")


def table(results: dict[str, dict]) -> str:
    """The Markdown table."""
    head = ("| molecule | atoms | budget | MD ns | steps | ESS | ESS n | ESS clipped | σ (nats) | valid | "
            "ring closures: width model / MD (nm) | E-W2 (kT) | T-W2 (rad) | ΔF(φ) rew. / MD (kT) | "
            "high-energy | refined by AIS: ESS (effective of n) | ΔF(φ) AIS (kT) | use | wall (min) |")
    lines = [head, "|" + "---|" * 19]
    for system, m in results.items():
        rings = "; ".join(f"{r['bond']} {r['model_sd']:.4f} / {r['md_sd']:.4f} ({r['ratio']:.2f})"
                          for r in m.get("ring_closures") or []) or "–"
        p = m["plan"]["preset"]
        df = (f"{_f(m.get('dF_phi_reweighted'), '.2f')} / {_f(m.get('dF_phi_md'), '.2f')}")
        wall = m.get("wall_seconds")
        lines.append(
            f"| {system} | {m['plan'].get('n_atoms', '–')} | {m['plan']['minutes']:g} min | "
            f"{p['md']['ns']:g} | {p['train']['steps']} | {m['ess']:.1%} | {m['ess_samples']:.0f} | "
            f"{m['ess_clipped']:.1%} | {m['log_w_spread']:.2f} | {m['fraction_valid']:.2%} | {rings} | "
            f"{_f(m.get('energy_w2_model'), '.3g')} | {_f(m.get('torus_w2_model'), '.3g')} | {df} | "
            f"{m.get('n_high_energy', '–')} | {refined_cells(m)} | "
            f"{_f(None if wall is None else wall / 60, '.1f')} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", action="append", help="molecule(s) to run (default: all)")
    parser.add_argument("--minutes", type=float, help="budget per molecule (default: table)")
    parser.add_argument("--out", default="runs/bench-molecules")
    parser.add_argument("--table", action="store_true", help="only print the table")
    parser.add_argument("--seed", type=int, default=0,
                        help="training seed; N > 0 runs into OUT/<slug>-seedN, from the seed-0 "
                        "run's plan and MD where it has them")
    args = parser.parse_args()
    set_threads(1)
    out = Path(args.out)
    chosen = [(s, args.minutes or dict(MOLECULES).get(s, 25.0)) for s in args.system] \
        if args.system else list(MOLECULES)
    results = {}
    for system, minutes in chosen:
        where = run_dir(out, system, args.seed)
        label = system + (f" (seed {args.seed})" if args.seed else "")
        if args.table:
            if (where / "metrics.json").exists():
                results[label] = collect(where)
            continue
        results[label] = run_one(system, minutes, out, args.seed)
        text = table(results)
        print(text, flush=True)
    text = table(results)
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "molecules.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
