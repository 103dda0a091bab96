"""Benchmark: the molecular Boltzmann generator on alanine dipeptide (``aldp-implicit``).

The settings are ``boltzflow.presets.QUALITY_ALDP`` (= ``boltzflow demo --quality``).

1. MD reference (cached in ``OUT/md``, resumable): parallel tempering with 4 replicas at
   300-600 K (geometric ladder, exchanges every 1 ps), a frame every 0.05 ps at 300 K, 100 ps of
   equilibration; ``--ns`` ns of production (default 10: 200,000 frames). Frequent frames matter:
   bonds and angles decorrelate within ~0.1 ps, and the flow overfits sparse frames.
2. Training (``OUT/run``): the internal-coordinate spline flow, maximum likelihood on the MD
   frames (the last ``n_test`` frames held out), then likelihood + reverse KL on the energy.
3. 100,000 samples, reweighting, evaluation: ESS (and clipped), held-out NLL, fraction of valid
   samples, ΔF(φ>0 − φ<0) reweighted vs MD (both with errors), energy-W2 and torus-W2 (raw and
   reweighted), wall-clock of training and sampling; a Markdown table on stdout.

    .venv/bin/python bench/aldp.py                  # see docs/benchmarks.md
    .venv/bin/python bench/aldp.py --quick          # smoke run (a few minutes)
    .venv/bin/python bench/aldp.py --config '{"internal.n_layers": 10}' --name layers10

The ΔF error bars: for the model, a bootstrap over the (weighted) samples; for MD, block
averaging over the time-ordered frames (``analysis.blocking``; a bootstrap over correlated
frames under-reports it), as in ``metrics.json``. The ESS comes with its 90 % interval over
draws (``sampling.effective_sample_size_interval``); ``bench/ess_draws.py`` redraws.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from pathlib import Path

import torch

from boltzflow import runs, systems
from boltzflow.analysis.dihedrals import ramachandran_angles
from boltzflow.data import Dataset
from boltzflow.md import geometric_temperatures, simulate
from boltzflow.models import override_config
from boltzflow.presets import QUALITY_ALDP

MD = {k: v for k, v in QUALITY_ALDP.md.items() if k not in ("ns", "replicas", "t_max")}
REPLICAS, T_MAX = QUALITY_ALDP.md["replicas"], QUALITY_ALDP.md["t_max"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ns", type=float, default=QUALITY_ALDP.md["ns"],
                        help="MD production length (ns)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-aldp"))
    parser.add_argument("--steps", type=int, default=None, help="override training steps")
    parser.add_argument("--kl-start", type=int, default=None, help="override internal.kl_start")
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="short MD and training")
    parser.add_argument("--config", type=str, default="",
                        help="JSON dict of section.key overrides, e.g. "
                        "'{\"internal.hidden\": [256, 256]}'")
    parser.add_argument("--name", type=str, default="run", help="run directory name under --out")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    overrides = json.loads(args.config) if args.config else {}
    flat = [k for k in overrides if "." not in k]
    if flat:
        parser.error(f"--config keys are section.key (e.g. train.steps, internal.kl_start), "
                     f"got {', '.join(flat)}")
    if args.quick:
        args.ns, args.samples = 0.2, 10_000
        overrides = {"train.steps": 200, "internal.kl_start": 100, "system.n_test": 400,
                     **overrides}
    if args.steps is not None:
        overrides["train.steps"] = args.steps
    if args.kl_start is not None:
        overrides["internal.kl_start"] = args.kl_start

    system = systems.get("aldp-implicit")
    md_dir = args.out / ("md-quick" if args.quick else "md")
    ladder = geometric_temperatures(system.temperature, T_MAX, REPLICAS)
    t0 = time.perf_counter()
    dataset = simulate(system, md_dir, ns=args.ns, replicas=ladder, progress=False, **MD)
    t_md = time.perf_counter() - t0
    print(f"MD: {len(dataset)} frames in {md_dir} ({t_md:.0f} s this session)", flush=True)

    cfg = override_config(QUALITY_ALDP.config(data=str(md_dir)),
                          {"sample.n_samples": args.samples, **overrides})
    run_dir = args.out / (f"{args.name}-quick" if args.quick else args.name)
    t0 = time.perf_counter()
    run = runs.train(cfg, run_dir, progress=False)
    t_train = time.perf_counter() - t0
    t0 = time.perf_counter()
    runs.sample(run, args.samples, progress=False)
    t_sample = time.perf_counter() - t0
    m = runs.evaluate(run, plots=True)
    with (run_dir / "train_log.csv").open() as f:
        log = list(csv.DictReader(f))
    train_seconds = float(log[-1]["time"]) if log else t_train

    phi_md, _ = ramachandran_angles(system, Dataset.load(md_dir).positions.to(torch.float64))
    m.update(t_train=t_train, t_train_log=train_seconds, t_sample=t_sample, md_frames=len(dataset),
             md_fraction_phi_pos=float((phi_md >= 0).double().mean()))
    (run_dir / "bench.json").write_text(json.dumps(m, indent=2) + "\n")
    print(json.dumps(m), flush=True)

    def pm(key: str) -> str:
        v = m.get(key)
        return "n/a" if v is None else f"{v:.2f} ± {m.get(key + '_stderr', math.nan):.2f}"

    p = cfg.params  # the internal-coordinate flow's section
    rows = [
        ("MD reference", f"{args.ns:g} ns PT ({REPLICAS} replicas 300-{T_MAX:g} K), "
         f"{len(dataset)} frames every {MD['frame_interval_ps']} ps, φ>0 fraction "
         f"{m['md_fraction_phi_pos']:.2%}"),
        ("training", f"{p.n_layers} layers × {p.hidden}, {p.n_bins} bins; {cfg.train.steps} "
         f"steps (NLL, + {p.w_kl:g}·KL from step {p.kl_start}); {t_train:.0f} s"),
        ("samples", f"{m['n_samples']:,}; sampling + energies {t_sample:.0f} s"),
        ("valid samples", f"{m['fraction_valid']:.2%}"),
        ("ESS (Kish; 90 % interval over draws)",
         f"{m['ess']:.2%} ({m['ess_low']:.1%}–{m['ess_high']:.1%}); largest weight "
         f"{m['max_weight']:.3g}"),
        (f"ESS, clipped ({cfg.sample.clip_fraction:.1%} largest weights)",
         f"{m['ess_clipped']:.2%}"),
        ("NLL, held-out MD frames (nats)", f"{m['nll']:.2f}"),
        ("ΔF(φ>0 − φ<0), reweighted model (kT)", pm("dF_phi_reweighted")),
        ("ΔF(φ>0 − φ<0), raw model (kT)", pm("dF_phi_model")),
        ("ΔF(φ>0 − φ<0), MD (kT; block error)", pm("dF_phi_md")),
        ("energy W2 vs MD, raw / reweighted (kT)",
         f"{m.get('energy_w2_model', math.nan):.3f} / {m.get('energy_w2_reweighted', math.nan):.3f}"),
        ("torus W2 (φ, ψ) vs MD, raw / reweighted (rad)",
         f"{m.get('torus_w2_model', math.nan):.3f} / {m.get('torus_w2_reweighted', math.nan):.3f}"),
    ]
    print()
    print("| quantity | value |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    print()
    print("figures: " + ", ".join(str(p) for p in sorted(run_dir.glob("*.png"))))


if __name__ == "__main__":
    main()
