"""Ring closures: the closing-bond widths of a ring-containing peptide, with and without making
each ring's closing bond a coordinate (``internal.ring_closures``) and bounding the tails.

Trains the ``internal`` flow twice on the same MD data with the same recipe, samples, and
prints the closing bonds' widths (model samples vs MD), ESS (fraction and count), valid
fraction, high-energy samples and energy W2:

    boltzflow simulate peptide:ACE-TRP-GLY-NME --ns 1 --replicas 4 --t-max 600 \\
        --frame-interval-ps 0.05 --equilibration-ps 20 --out runs/rings/trp-md
    python bench/rings.py --system peptide:ACE-TRP-GLY-NME --data runs/rings/trp-md \\
        --out runs/rings --steps 1500

Each layout trains into its own run directory (resumable; ``--layout NAME`` trains one, so two
processes can share two cores); the table is also written to ``OUT/rings.md``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from boltzflow import runs
from boltzflow.models import config_with
from boltzflow.threads import set_threads

#: (name, internal-section changes) of the compared layouts.
LAYOUTS = {
    "plain": {"internal.ring_closures": False, "internal.tail_bound": 0.0},
    "closures": {"internal.ring_closures": True, "internal.tail_bound": 10.0},
}


def run_layout(name: str, args: argparse.Namespace) -> dict:
    """Train, sample and evaluate one layout (each stage resumes or is reused)."""
    out = Path(args.out) / name
    metrics = out / "metrics.json"
    if metrics.exists() and (out / "checkpoint.pt").exists():
        return json.loads(metrics.read_text())
    cfg = config_with({}, {
        "model": "internal", "system.id": args.system, "system.data": args.data,
        "system.n_data": args.n_data, "system.n_test": 2000, "train.steps": args.steps,
        "train.batch_size": 256, "train.lr": 1e-3, "internal.n_layers": 6,
        "internal.hidden": [128, 128], "internal.kl_start": args.steps // 2,
        "internal.u_high": 200.0, "sample.n_samples": args.n, **LAYOUTS[name],
    })
    t0 = time.perf_counter()
    run = runs.train(cfg, out, progress=False)
    runs.sample(run, args.n, progress=False)
    m = runs.evaluate(run)
    m["bench_seconds"] = time.perf_counter() - t0
    return m


def table(results: dict[str, dict]) -> str:
    """Markdown table: one row per layout and closing bond."""
    lines = ["| layout | closing bond | width model (nm) | width MD (nm) | ratio | ESS | ESS n | "
             "valid | high-energy | E-W2 raw (kT) |", "|---" * 10 + "|"]
    for name, m in results.items():
        for ring in m.get("ring_closures") or [{}]:
            lines.append(
                f"| {name} | {ring.get('bond', '–')} | {ring.get('model_sd', float('nan')):.4f} | "
                f"{ring.get('md_sd', float('nan')):.4f} | {ring.get('ratio', float('nan')):.2f} | "
                f"{m['ess']:.2%} | {m['ess_samples']:.0f} | {m['fraction_valid']:.1%} | "
                f"{m.get('n_high_energy', '–')} / {m['n_samples']} | "
                f"{m.get('energy_w2_model', float('nan')):.3g} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", default="peptide:ACE-TRP-GLY-NME")
    parser.add_argument("--data", required=True, help="MD dataset of the system")
    parser.add_argument("--out", default="runs/rings")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--n-data", type=int, default=18000)
    parser.add_argument("-n", type=int, default=20000, help="samples per layout")
    parser.add_argument("--layout", choices=sorted(LAYOUTS), help="only this layout")
    args = parser.parse_args()
    set_threads(1)
    names = [args.layout] if args.layout else list(LAYOUTS)
    results = {name: run_layout(name, args) for name in names}
    text = table(results)
    print(text)
    if not args.layout:
        Path(args.out, "rings.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
