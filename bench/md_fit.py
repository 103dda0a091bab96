"""Does the `internal` flow learn its MD frames instead of the Boltzmann distribution? Longer
training against longer MD on one peptide.

Trains the one-command path's flow (6 × [128, 128] spline couplings, batch 256, lr 1e-3
cosine) on the MD of a capped peptide with several training lengths and reverse-KL phases, on
a short and a long MD of the same molecule, then samples 20,000 configurations of each and
prints, side by side: the held-out NLL (the MD's last frames), the NLL of as many training
frames and their gap, ESS (fraction and count), the log-weight spread σ (84th percentile −
median, ``boltzflow.sampling.log_weight_spread``) and the ESS ``exp(−σ²)`` Gaussian log-weights
of that spread would have, samples above the highest MD energy + 20 kT and the raw energy W2:

    boltzflow simulate peptide:ACE-TRP-GLY-NME --ns 1.7 --replicas 4 --t-max 600 \\
        --frame-interval-ps 0.05 --equilibration-ps 20 --out runs/md-fit/md-short
    cp -r runs/md-fit/md-short runs/md-fit/md-long   # then extend the copy to 6 ns:
    boltzflow simulate peptide:ACE-TRP-GLY-NME --ns 6 --replicas 4 --t-max 600 \\
        --frame-interval-ps 0.05 --equilibration-ps 20 --out runs/md-fit/md-long
    python bench/md_fit.py --short runs/md-fit/md-short --long runs/md-fit/md-long

Every variant trains into ``OUT/<name>`` and resumes; ``--variant NAME`` runs one (two
processes share two cores); ``--table`` prints what has run. The table also goes to
``OUT/md_fit.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from boltzflow import runs
from boltzflow.models import config_with
from boltzflow.sampling import log_weight_spread
from boltzflow.threads import set_threads

#: name -> (MD: "short", "long" or "long:NS" (the first NS ns of the long MD), training steps,
#: reverse KL from this step (None: never), coupling layers). The ``budget-*`` variants split
#: the one-command path's 25-minute plan for this peptide differently between MD and training:
#: its probes priced 1.7 ns of MD at 35 % of the budget and 3,400 steps at 50 % (short-3400);
#: 50/35 % buys 2.4 ns and 2,400 steps, 60/25 % 2.9 ns and 1,700, 70/15 % 3.4 ns and 1,000.
VARIANTS = {
    "short-3400": ("short", 3400, 1700, 6),
    "short-12k-kl6k": ("short", 12000, 6000, 6),
    "short-12k-kl3k": ("short", 12000, 3000, 6),
    "short-12k-nll": ("short", 12000, None, 6),
    "long-3400": ("long", 3400, 1700, 6),
    "long-3400-8layers": ("long", 3400, 1700, 8),
    "long-12k-kl3k": ("long", 12000, 3000, 6),
    "long-24k-kl6k": ("long", 24000, 6000, 6),
    "budget-md50": ("long:2.4", 2400, 1200, 6),
    "budget-md60": ("long:2.9", 1700, 850, 6),
    "budget-md70": ("long:3.4", 1000, 500, 6),
    "short-3400-seed1": ("short", 3400, 1700, 6),
    "budget-md60-seed1": ("long:2.9", 1700, 850, 6),
    "long-3400-seed1": ("long", 3400, 1700, 6),
    "long-3400-lr2e-3": ("long", 3400, 1700, 6),
    "long-3400-bins16": ("long", 3400, 1700, 6),
    "long-3400-wkl3": ("long", 3400, 1700, 6),
    "long-3400-lv1": ("long", 3400, 1700, 6),
    "long-3400-lv1-kl0": ("long", 3400, 1700, 6),
    "budget-md60-lv1": ("long:2.9", 1700, 850, 6),
    "long-3400-lv4": ("long", 3400, 1700, 6),
    "long-3400-lv1-kl0.1": ("long", 3400, 1700, 6),
    "long-3400-lvq-kl0": ("long", 3400, 1700, 6),
    "long-3400-lv1-kl0-seed1": ("long", 3400, 1700, 6),
    "long-3400-lv1-kl0-from0": ("long", 3400, 0, 6),
    "budget-md60-lv1-kl0": ("long:2.9", 1700, 850, 6),
    "long-3400-lv0.25-kl0": ("long", 3400, 1700, 6),
    "long-3400-nll": ("long", 3400, None, 6),
    # alanine dipeptide (``--system aldp-implicit``, both MDs the molecules benchmark's 10 ns):
    # the one-command plan's training (8 layers, 7,600 steps) with the log-weight variance
    "aldp-7600-lv1-kl0": ("long", 7600, 3800, 8),
    "aldp-7600-lv0.25-kl0": ("long", 7600, 3800, 8),
    "long-3400-lv0.25-kl0-seed1": ("long", 3400, 1700, 6),
    "long-3400-lv0.1-kl0": ("long", 3400, 1700, 6),
    "budget-md60-lv0.25-kl0": ("long:2.9", 1700, 850, 6),
    # the molecules benchmark's peptide runs (``--system``, ``--long`` their MD): its plan's
    # steps with 0.25·LV in place of the reverse KL
    "plan-2000-lv0.25-kl0": ("long", 2000, 1000, 6),
    "plan-2400-lv0.25-kl0": ("long", 2400, 1200, 6),
    "plan-2600-lv0.25-kl0": ("long", 2600, 1300, 6),
    # the flow's capacity on the 2-fs / 3-amu plan's Trp-Gly MD (``--long`` that run's 6.9 ns):
    # its 4,200 steps with 8 layers or 16 spline bins
    "plan-4200-lv0.25-kl0-8layers": ("long", 4200, 2100, 8),
    "plan-4200-lv0.25-kl0-bins16": ("long", 4200, 2100, 6),
    # the same with the coupling masks that split neighbouring free torsions (``-tmasks``:
    # ``torsion_masks`` 1, the default since; ``-tmasks2``: 2, amide ω weighted down; every
    # variant above has masks by position in the coordinate vector)
    "plan-4200-lv0.25-kl0-tmasks": ("long", 4200, 2100, 6),
    "plan-4200-lv0.25-kl0-tmasks-8layers": ("long", 4200, 2100, 8),
    "plan-4200-lv0.25-kl0-tmasks-seed1": ("long", 4200, 2100, 6),
    "plan-4200-lv0.25-kl0-tmasks2": ("long", 4200, 2100, 6),
    "plan-4200-lv0.25-kl0-tmasks2-seed1": ("long", 4200, 2100, 6),
    # the other molecules' v4 one-command runs (``--system``, ``--long`` their MD), their plan's
    # flow and steps, retrained with the torsion masks
    "plan-4100-lv0.25-kl0-tmasks": ("long", 4100, 2050, 6),
    "plan-4100-lv0.25-kl0-tmasks2": ("long", 4100, 2050, 6),
    "plan-4300-lv0.25-kl0-tmasks": ("long", 4300, 2150, 6),
    "plan-4300-lv0.25-kl0-tmasks2": ("long", 4300, 2150, 6),
    "aldp-7000-kl3500-tmasks": ("long", 7000, 3500, 8),
    "aldp-7000-kl3500-tmasks2": ("long", 7000, 3500, 8),
    # the v6 Trp-Gly one-command plan (4.2 ns, 2,800 steps) with torsion-shifted data frames in
    # the log-weight variance (``-jitW``: ``internal.lv_jitter`` W rad)
    "plan-2800-lv0.25-kl0-tmasks": ("long", 2800, 1400, 6),
    "plan-2800-lv0.25-kl0-tmasks-jit0.15": ("long", 2800, 1400, 6),
    "plan-2800-lv0.25-kl0-tmasks-jit0.3": ("long", 2800, 1400, 6),
    "plan-2800-lv0.25-kl0-tmasks-seed1": ("long", 2800, 1400, 6),
    "plan-2800-lv0.25-kl0-tmasks-seed2": ("long", 2800, 1400, 6),
    # what makes the flow fit its frames better than fresh ones of the same MD
    "plan-2800-nll-tmasks": ("long", 2800, None, 6),
    "plan-1400-lv0.25-kl0-tmasks": ("long", 1400, 700, 6),
    "plan-2800-lv0.25-kl0-tmasks-h64": ("long", 2800, 1400, 6),
    # ``--long`` an MD of the same length and settings with a frame every 0.02 ps (210,000)
    "plan-2800-lv0.25-kl0-tmasks-dense": ("long", 2800, 1400, 6),
    # the 30-minute plan's Trp-Gly (``--long`` its 5.7-ns MD, 3,900 steps, the run's split) with
    # the reweighted likelihood of the flow's own samples beside 0.25·LV (``-rwW``: ``w_rw`` W)
    "plan-3900-lv0.25-rw1": ("long", 3900, 1950, 6),
    # the same with the reverse KL (1·KL, the plan's energy term up to 30 atoms) instead of LV
    "plan-3900-kl-tmasks": ("long", 3900, 1950, 6),
    # the plan's flow with Adam's weight decay 1e-4 (``-wd``) or 512 frames per step (``-b512``)
    "plan-3900-lv0.25-wd": ("long", 3900, 1950, 6),
    "plan-3900-lv0.25-b512": ("long", 3900, 1950, 6),
    # noise of 0.1 standard deviations on the frames' bonds, angles and rigid torsions in the
    # likelihood (``internal.frame_noise``)
    "plan-3900-lv0.25-noise0.1": ("long", 3900, 1950, 6),
    # 512 frames per step at the plan's cost: half the steps
    "plan-1950-lv0.25-b512": ("long", 1950, 975, 6),
    # 512 frames per step, twice the plan's steps per second: compiled spline kernels
    "plan-3900-lv0.25-b512-compiled": ("long", 3900, 1950, 6),
    # the same on the other 30-minute peptide runs (``--system``, ``--long`` their MD)
    "alatyr-3900-lv0.25-b512-compiled": ("long", 3900, 1950, 6),
    "prophe-3300-lv0.25-b512-compiled": ("long", 3300, 1650, 6),
}
#: Config changes of a variant beyond its tuple: the ``-seed1`` twins measure how much a row
#: moves with the training seed alone; the others change one setting of ``long-3400``.
OVERRIDES = {
    "short-3400-seed1": {"train.seed": 1}, "budget-md60-seed1": {"train.seed": 1},
    "long-3400-seed1": {"train.seed": 1}, "long-3400-lr2e-3": {"train.lr": 2e-3},
    "long-3400-bins16": {"internal.n_bins": 16}, "long-3400-wkl3": {"internal.w_kl": 3.0},
    "long-3400-lv1": {"internal.w_lv": 1.0},
    "long-3400-lv1-kl0": {"internal.w_lv": 1.0, "internal.w_kl": 0.0},
    "budget-md60-lv1": {"internal.w_lv": 1.0}, "long-3400-lv4": {"internal.w_lv": 4.0},
    "long-3400-lv1-kl0.1": {"internal.w_lv": 1.0, "internal.w_kl": 0.1},
    "long-3400-lvq-kl0": {"internal.w_lv": 1.0, "internal.w_kl": 0.0, "internal.lv_samples": 256},
    "long-3400-lv1-kl0-seed1": {"internal.w_lv": 1.0, "internal.w_kl": 0.0, "train.seed": 1},
    "long-3400-lv1-kl0-from0": {"internal.w_lv": 1.0, "internal.w_kl": 0.0},
    "budget-md60-lv1-kl0": {"internal.w_lv": 1.0, "internal.w_kl": 0.0},
    "long-3400-lv0.25-kl0": {"internal.w_lv": 0.25, "internal.w_kl": 0.0},
    "aldp-7600-lv1-kl0": {"internal.w_lv": 1.0, "internal.w_kl": 0.0},
    "aldp-7600-lv0.25-kl0": {"internal.w_lv": 0.25, "internal.w_kl": 0.0},
    "long-3400-lv0.25-kl0-seed1": {"internal.w_lv": 0.25, "internal.w_kl": 0.0, "train.seed": 1},
    "long-3400-lv0.1-kl0": {"internal.w_lv": 0.1, "internal.w_kl": 0.0},
    "budget-md60-lv0.25-kl0": {"internal.w_lv": 0.25, "internal.w_kl": 0.0},
    **{f"plan-{n}-lv0.25-kl0": {"internal.w_lv": 0.25, "internal.w_kl": 0.0}
       for n in (2000, 2400, 2600)},
    "plan-4200-lv0.25-kl0-8layers": {"internal.w_lv": 0.25, "internal.w_kl": 0.0},
    "plan-4200-lv0.25-kl0-bins16": {"internal.w_lv": 0.25, "internal.w_kl": 0.0,
                                    "internal.n_bins": 16},
    **{name: {"internal.w_lv": 0.25, "internal.w_kl": 0.0, "internal.torsion_masks": 1}
       for name in ("plan-4200-lv0.25-kl0-tmasks", "plan-4200-lv0.25-kl0-tmasks-8layers",
                    "plan-4100-lv0.25-kl0-tmasks", "plan-4300-lv0.25-kl0-tmasks")},
    **{f"plan-{n}-lv0.25-kl0-tmasks2": {"internal.w_lv": 0.25, "internal.w_kl": 0.0,
                                        "internal.torsion_masks": 2} for n in (4100, 4200, 4300)},
    "plan-4200-lv0.25-kl0-tmasks-seed1": {"internal.w_lv": 0.25, "internal.w_kl": 0.0,
                                          "internal.torsion_masks": 1, "train.seed": 1},
    "plan-4200-lv0.25-kl0-tmasks2-seed1": {"internal.w_lv": 0.25, "internal.w_kl": 0.0,
                                           "internal.torsion_masks": 2, "train.seed": 1},
    "aldp-7000-kl3500-tmasks": {"internal.torsion_masks": 1},
    "aldp-7000-kl3500-tmasks2": {"internal.torsion_masks": 2},
    "plan-2800-lv0.25-kl0-tmasks": {"internal.w_lv": 0.25, "internal.w_kl": 0.0,
                                    "internal.torsion_masks": 1},
    **{f"plan-2800-lv0.25-kl0-tmasks-jit{w:g}": {
        "internal.w_lv": 0.25, "internal.w_kl": 0.0, "internal.torsion_masks": 1,
        "internal.lv_jitter": w} for w in (0.15, 0.3)},
    **{f"plan-2800-lv0.25-kl0-tmasks-seed{k}": {
        "internal.w_lv": 0.25, "internal.w_kl": 0.0, "internal.torsion_masks": 1,
        "train.seed": k} for k in (1, 2)},
    "plan-2800-nll-tmasks": {"internal.torsion_masks": 1},
    "plan-1400-lv0.25-kl0-tmasks": {"internal.w_lv": 0.25, "internal.w_kl": 0.0,
                                    "internal.torsion_masks": 1},
    "plan-2800-lv0.25-kl0-tmasks-h64": {"internal.w_lv": 0.25, "internal.w_kl": 0.0,
                                        "internal.torsion_masks": 1, "internal.hidden": [64, 64]},
    "plan-2800-lv0.25-kl0-tmasks-dense": {"internal.w_lv": 0.25, "internal.w_kl": 0.0,
                                          "internal.torsion_masks": 1,
                                          "system.n_data": 300_000},
    **{f"plan-3900-lv0.25-rw{w:g}": {
        "internal.w_lv": 0.25, "internal.w_kl": 0.0, "internal.torsion_masks": 1,
        "internal.w_rw": w, "system.n_data": 280_000, "system.n_test": 5000} for w in (1.0,)},
    "plan-3900-kl-tmasks": {"internal.torsion_masks": 1, "system.n_data": 280_000,
                            "system.n_test": 5000},
    **{name: {"internal.w_lv": 0.25, "internal.w_kl": 0.0, "internal.torsion_masks": 1,
              "system.n_data": 280_000, "system.n_test": 5000, **extra}
       for name, extra in (("plan-3900-lv0.25-wd", {"train.weight_decay": 1e-4}),
                           ("plan-3900-lv0.25-b512", {"train.batch_size": 512}),
                           ("plan-3900-lv0.25-noise0.1", {"internal.frame_noise": 0.1}),
                           ("plan-1950-lv0.25-b512", {"train.batch_size": 512}),
                           ("plan-3900-lv0.25-b512-compiled", {"train.batch_size": 512,
                                                               "train.compile": True}))},
    **{name: {"internal.w_lv": 0.25, "internal.w_kl": 0.0, "internal.torsion_masks": 1,
              "system.n_data": n_data, "system.n_test": 5000, "train.batch_size": 512,
              "train.compile": True}
       for name, n_data in (("alatyr-3900-lv0.25-b512-compiled", 290_000),
                            ("prophe-3300-lv0.25-b512-compiled", 235_000))},
}


def md_path(md: str, args: argparse.Namespace) -> Path:
    """The dataset of an MD spec; ``long:NS`` is written once as ``OUT/md-long-NSns``, the long
    MD's frames up to NS ns (its first NS ns is exactly what a run of that length would give:
    the long MD extended the short one, same seed)."""
    if md in ("short", "long"):
        return Path(args.short if md == "short" else args.long)
    ns = float(md.split(":")[1])
    out = Path(args.out) / f"md-long-{ns:g}ns"
    if not (out / "provenance.json").exists():
        from boltzflow.data import Dataset

        full = Dataset.load(args.long)
        keep = full.time_ps <= ns * 1000 + 1e-6
        prefix = Dataset(full.positions[keep], full.energies[keep], full.time_ps[keep],
                         full.replica[keep], {**full.provenance, "production_ns": ns,
                                               "prefix_of": str(args.long)})
        prefix._topology = full.topology
        prefix.save(out)
    return out


def variant_config(system: str, data: Path, steps: int, kl_start: int | None, layers: int,
                   n_samples: int, overrides: dict) -> dict:
    """The run config of a variant: the one-command plan's flow and batch on ``data``, the
    reverse KL from ``kl_start`` (``None``: likelihood only), coupling masks by position in
    the coordinate vector (as every variant before ``-tmasks`` was measured), then
    ``overrides``."""
    return config_with({}, {
        "model": "internal", "system.id": system, "system.data": str(data),
        "system.n_data": 100_000, "system.n_test": 2000, "train.steps": steps,
        "train.batch_size": 256, "train.lr": 1e-3, "train.checkpoint_every": 500,
        "internal.n_layers": layers, "internal.hidden": [128, 128], "internal.n_bins": 8,
        "internal.w_kl": 0.0 if kl_start is None else 1.0, "internal.kl_start": kl_start or 0,
        "internal.u_high": 200.0, "internal.kl_batch_size": 256, "sample.n_samples": n_samples,
        "internal.torsion_masks": 0, **overrides,
    })


def run_variant(name: str, args: argparse.Namespace) -> dict:
    """Train, sample and evaluate one variant (each stage resumes or is reused)."""
    out = Path(args.out) / name
    metrics = out / "metrics.json"
    if metrics.exists() and (out / "samples.npz").exists():
        return json.loads(metrics.read_text())
    md, steps, kl_start, layers = VARIANTS[name]
    cfg = variant_config(args.system, md_path(md, args), steps, kl_start, layers, args.n,
                         OVERRIDES.get(name, {}))
    return train_sample_evaluate(cfg, out, args.n)


def train_sample_evaluate(cfg: dict, out: Path, n: int) -> dict:
    """Train ``cfg`` into ``out`` (resuming), draw ``n`` samples, evaluate; the metrics (also
    written to ``out/metrics.json``) with the training seconds."""
    t0 = time.perf_counter()
    run = runs.train(cfg, out, progress=False)
    train_s = time.perf_counter() - t0
    runs.sample(run, n, progress=False)
    m = runs.evaluate(run)
    m["bench_train_seconds"] = train_s
    (out / "metrics.json").write_text(json.dumps(m, indent=2) + "\n")
    return m


def spread(path: Path) -> float:
    """The log-weight spread σ of a run's samples (:func:`boltzflow.sampling.log_weight_spread`)."""
    return log_weight_spread(torch.from_numpy(np.load(path)["log_w"]))


def md_ns(data: Path) -> float:
    """Production length of an MD dataset (ns)."""
    return float(json.loads((Path(data) / "provenance.json").read_text())["production_ns"])


def energy_terms(name: str, kl_start: int | None) -> str:
    """The energy terms of a variant's loss besides the likelihood: ``KL`` (reverse KL), ``LV``
    (log-weight variance of the data batch, ``+q``: with model samples), ``RW`` (reweighted
    likelihood of model samples), with their weights."""
    o = OVERRIDES.get(name, {})
    w_kl = o.get("internal.w_kl", 0.0 if kl_start is None else 1.0)
    w_lv = o.get("internal.w_lv", 0.0)
    w_rw = o.get("internal.w_rw", 0.0)
    terms = [f"{w:g}·{t}" for w, t in ((w_kl, "KL"), (w_lv, "LV"), (w_rw, "RW")) if w > 0]
    if o.get("internal.lv_samples"):
        terms[-1] += "+q"
    if o.get("internal.lv_jitter"):
        terms[-1] += f"+shifted {o['internal.lv_jitter']:g} rad"
    return " + ".join(terms) or "–"


def table(results: dict[str, dict], args: argparse.Namespace) -> str:
    """Markdown table, one row per variant."""
    lines = ["| variant | MD (ns) | layers | steps | energy terms | from | NLL held-out | "
             "NLL training | gap | ESS | ESS n | ESS 90 % interval | tail k | σ (nats) | "
             "exp(−σ²) | high-energy | E-W2 raw (kT) |", "|---" * 17 + "|"]
    for name, m in results.items():
        md, steps, kl_start, layers = VARIANTS[name]
        sigma = spread(Path(args.out) / name / "samples.npz")
        lines.append(
            f"| {name} | {md_ns(md_path(md, args)):g} | {layers} | {steps} | "
            f"{energy_terms(name, kl_start)} | {'–' if kl_start is None else kl_start} | "
            f"{m['nll']:.1f} | {m['nll_train']:.1f} | "
            f"{m['nll_gap']:.1f} | {m['ess']:.2%} | {m['ess_samples']:.0f} | "
            f"{m['ess_low']:.2%}–{m['ess_high']:.2%} | {m['ess_tail_index']:.2f} | {sigma:.2f} | "
            f"{math.exp(-sigma ** 2):.2%} | "
            f"{m['n_high_energy']} | {m['energy_w2_model']:.3g} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", default="peptide:ACE-TRP-GLY-NME")
    parser.add_argument("--short", type=Path, required=True, help="the short MD dataset")
    parser.add_argument("--long", type=Path, required=True, help="the long MD dataset")
    parser.add_argument("--out", type=Path, default=Path("runs/md-fit"))
    parser.add_argument("-n", type=int, default=20_000, help="samples per variant")
    parser.add_argument("--variant", choices=sorted(VARIANTS), help="run only this one")
    parser.add_argument("--table", action="store_true", help="print what has run, run nothing")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    set_threads(args.threads)
    names = [args.variant] if args.variant else list(VARIANTS)
    results = {}
    for name in names:
        done = (args.out / name / "metrics.json").exists()
        if args.table and not done:
            continue
        results[name] = (json.loads((args.out / name / "metrics.json").read_text()) if args.table
                         else run_variant(name, args))
    text = table(results, args)
    print(text)
    if not args.variant:
        (args.out / "md_fit.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
