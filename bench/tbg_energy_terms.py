"""Where the transferable BG's samples lose energy: mean force-field terms of its valid samples
minus those of MD, per held-out peptide (kT).

Two sources of samples:

* an evaluation directory (``--eval DIR``, one ``<seq>/samples.npz`` per peptide, as
  ``boltzflow evaluate --run RUN --split test`` and ``bench/transferable.py`` write it into
  ``RUN/eval-test``; default ``OUT/run-PRESET/eval-test`` from ``--out`` and ``--preset``): its
  saved samples;
* ``--run RUN`` (a ``model: tbg`` run directory; ``--checkpoint`` is the older spelling): fresh
  samples of its (possibly still training) checkpoint, integrated by RK4 *without* the
  log-likelihood — seconds per peptide instead of the half hour exact ``log q`` costs, so a
  geometry check while a run trains, or between two runs;
* ``--md-noise NM``: the MD frames themselves with Gaussian noise of ``NM`` nm per coordinate —
  what a blur of the data costs (the path width ``sigma`` 0.01 of a 0.219 nm field unit
  blurs by 0.0022 nm).

    .venv/bin/python bench/tbg_energy_terms.py [--out runs/bench-tbg] [--preset cpu] [AC,NY,KI]
    .venv/bin/python bench/tbg_energy_terms.py --run runs/bench-tbg/run-cpu [--n 64]
    .venv/bin/python bench/tbg_energy_terms.py --md-noise 0.0022 AC,AA
    .venv/bin/python bench/tbg_energy_terms.py --spread \
        --eval runs/bench-tbg/run-cpu-sigma0.001/q12x24p2/eval-test

The MD reference comes from ``--data`` (a dipeptide dataset), else the run's dataset, else
``OUT/data``.

``--spread``: instead of the means, how widely the energies of the valid samples spread (robust
standard deviation, IQR / 1.349, in kT), the model's next to MD's, and, for saved evaluation
samples, the spread of ``log q`` and of the log-weights. A Kish ESS of a few per cent needs
log-weights that spread by a nat or two; this shows which terms stand in the way.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def flow_samples(model, system, n: int, steps: int, seed: int = 0) -> torch.Tensor:
    """``n`` samples (nm) of ``system`` from ``model`` (a ``TBGKind``): the prior pushed
    through RK4 × ``steps``, no log q."""
    from boltzflow.continuous import RK4
    from boltzflow.distributions.normal import MeanFreeNormal

    context = model.encode(system).context().to(model.device)
    torch.manual_seed(seed)
    z = MeanFreeNormal(system.n_atoms, 3).sample(n).to(model.device)

    def f(t, y):
        return (model.module(t.expand(len(y[0])), y[0], context),)

    with torch.no_grad():
        (x,) = RK4(steps).solve(f, (z,), 0.0, 1.0)
    return (x * model.scale).to("cpu", torch.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sequences", nargs="?", default=None, help="e.g. AC,NY,KI [all]")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-tbg"),
                        help="bench/transferable.py's output [runs/bench-tbg]")
    parser.add_argument("--preset", default="cpu",
                        help="its run: the samples of OUT/run-PRESET/eval-test [cpu]")
    parser.add_argument("--eval", type=Path, default=None,
                        help="an evaluation directory (<seq>/samples.npz) instead")
    parser.add_argument("--run", "--checkpoint", dest="run", type=Path, default=None,
                        help="sample this tbg run directory afresh (no log q) instead")
    parser.add_argument("--data", type=Path, default=None,
                        help="dipeptide dataset of the MD [the run's, else OUT/data]")
    parser.add_argument("--n", type=int, default=64, help="fresh samples per peptide [64]")
    parser.add_argument("--rk4-steps", type=int, default=16)
    parser.add_argument("--md-noise", type=float, default=None,
                        help="noisy MD frames (noise in nm) instead of model samples")
    parser.add_argument("--spread", action="store_true",
                        help="robust spread of the energies (and log q, log w) instead of means")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from boltzflow import runs, systems
    from boltzflow.analysis.validity import validity
    from boltzflow.data.dipeptides import TEST_SEQUENCES, load_index
    from boltzflow.sampling import Samples

    eval_dir = args.eval or args.out / f"run-{args.preset}" / "eval-test"
    data = args.data
    model = None
    if args.run is not None:
        run_dir = args.run.parent if args.run.suffix == ".pt" else args.run
        run = runs.load_run(run_dir)
        model = run.model
        data = data or Path(run.config.system.dataset)
        print(f"{run_dir}: step {model.info.get('step')}, {args.n} samples each, "
              f"RK4 × {args.rk4_steps}, no log q")
        default = list(TEST_SEQUENCES)
    elif args.md_noise is not None:
        print(f"MD frames (every 10th) + N(0, {args.md_noise} nm) per coordinate")
        default = list(TEST_SEQUENCES)
    else:
        default = sorted(p.name for p in eval_dir.iterdir() if (p / "samples.npz").exists())
    seqs = args.sequences.split(",") if args.sequences else default
    index = load_index(data or args.out / "data")
    rows, spreads = [], []
    for seq in seqs:
        system = systems.get(f"dipeptide:{seq}")
        saved = None  # an evaluation's samples, with their log q and log w
        md = index.dataset(seq).positions[::10].to(torch.float64)
        if model is not None:
            x = flow_samples(model, system, args.n, args.rk4_steps)
        elif args.md_noise is not None:
            x = md + args.md_noise * torch.randn(md.shape, generator=torch.Generator().manual_seed(0),
                                                 dtype=md.dtype)
        else:
            saved = Samples.load(eval_dir / seq / "samples.npz")
            x = saved.x.to(torch.float64)
        rep = validity(x, system)
        keep = rep.bonds_ok & rep.chirality_ok
        ff = system.energy.to(torch.float64)
        model_terms, ref = ff.terms(x[keep]), ff.terms(md)
        if args.spread:
            extra = {} if saved is None else {"log q": saved.log_q[keep], "log w": saved.log_w[keep]}
            spreads.append((seq, f"{int(keep.sum())}/{len(x)}",
                            _spread(model_terms, ff.kT), _spread(ref, ff.kT),
                            {k: _sd(v) for k, v in extra.items()}))
            continue
        rows.append((seq, f"{int(keep.sum())}/{len(x)}", {
            k: float(model_terms[k].mean() - ref[k].mean()) / ff.kT for k in model_terms
        }))
    if args.spread:
        _print_spreads(spreads)
        return
    names = list(rows[0][2])
    print("| peptide | valid samples | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for seq, n, d in rows:
        print(f"| {seq} | {n} | " + " | ".join(f"{d[k]:+.1f}" for k in names) + " |")
    means = {k: sum(d[k] for *_, d in rows) / len(rows) for k in names}
    print("| **mean** | | " + " | ".join(f"{means[k]:+.1f}" for k in names) + " |")


def _sd(v: torch.Tensor) -> float:
    """Robust standard deviation: interquartile range / 1.349 (a Gaussian's sd); NaN if empty."""
    if v.numel() == 0:  # no valid samples
        return float("nan")
    q = torch.quantile(v.double(), torch.tensor([0.25, 0.75], dtype=torch.float64))
    return float(q[1] - q[0]) / 1.349


def _spread(terms: dict[str, torch.Tensor], kT: float) -> dict[str, float]:
    """Robust sd (kT) of the total energy, of bonds + angles, and of everything else."""
    total = sum(terms.values()) / kT
    bonded = (terms["bond"] + terms["angle"]) / kT
    return {"u": _sd(total), "bond + angle": _sd(bonded), "rest": _sd(total - bonded)}


def _print_spreads(spreads) -> None:
    names = list(spreads[0][2])
    extra = list(spreads[0][4])
    print("robust sd (IQR / 1.349) over the valid samples, kT: model / MD")
    print("| peptide | valid samples | " + " | ".join(names + extra) + " |")
    print("|---|---|" + "---|" * (len(names) + len(extra)))
    for seq, n, m, md, ex in spreads:
        cells = [f"{m[k]:.1f} / {md[k]:.1f}" for k in names] + [f"{ex[k]:.1f}" for k in extra]
        print(f"| {seq} | {n} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
