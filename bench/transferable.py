"""Benchmark: the transferable Boltzmann generator, zero-shot on held-out dipeptides.

One script, four phases, each resumable (rerun the same command after an interruption):

1. **data** — MD of the training dipeptides (short) and of the held-out test dipeptides
   (longer, they are the reference) with ``boltzflow.data.dipeptides.build_dipeptide_dataset``
   into ``OUT/data`` (amber14 + OBC2, 310 K, Reference platform).
2. **train** — a ``model: tbg`` run (:class:`~boltzflow.models.tbg.TBGKind`: one
   :class:`~boltzflow.continuous.PeptideEGNN` trained by flow matching across all training
   peptides) with :func:`boltzflow.runs.train` into ``OUT/run-<preset>`` (bf16 autocast on
   CPU: this Xeon has AMX).
3. **cost** — what an exact ``log q`` costs per sample on a mid-size test peptide with the
   chosen integrator, and its ``log q`` error against a fine RK4 reference on the same samples;
   the number of samples per test peptide is sized from it to fit the sampling budget.
4. **evaluate** — every test peptide sampled zero-shot (exact ``log q``, TorchForceField ``u``,
   mirror fix, validity), compared with its MD, by :func:`boltzflow.runs.evaluate_split`: the
   per-peptide table (ESS, valid %, E-W2, T-W2 raw vs reweighted, ΔF of the φ basins) + means,
   and the Ramachandran grid, in ``OUT/run-<preset>/eval-test`` (as ``boltzflow evaluate --run
   RUN --split test`` writes it). A peptide whose ``eval-test/<seq>/samples.npz`` and
   ``metrics.json`` hold as many samples is not sampled again, so a rerun resumes an
   interrupted evaluation, or re-evaluates a finished one's samples into the same table (the
   sample count is then read from them unless ``--n-samples`` is given; an evaluation of the
   first version, ``OUT/eval-<preset>``, is re-evaluated once moved to that place).
   ``--quadrature`` samples with another integrator into
   ``OUT/run-<preset>/q<N>x<S>p<P>/eval-test``.

Budgets (``--preset``):

* **cpu** (default; about 2 h on this 2-core machine, measured with another job on the second
  core): all 386 training dipeptides × 20 ps of MD (a frame every 0.5 ps: 40 frames each;
  ≈ 4 s per peptide per worker, 2 workers: 12–20 min) and the 14 test dipeptides × 0.5 ns
  (≈ 2 min each per worker: ≈ 13 min); the chiral EGNN 4 × 32 with the bond-graph and RBF edge
  features (``--e3`` for the paper's E(3) field with the mirror fix, ``--encoding tbg-full`` to
  drop the edge features: the paper's encoding alone), 5000 steps of 16 peptides × 8 frames
  (``train.batch_size`` 128) with bf16 autocast, lr 5e-3 cosine (≈ 0.5 s per step: ≈ 42 min); the log-det by 8-node
  Gauss–Legendre quadrature along an RK4 × 16 trajectory, 0.3 s (24 atoms) to 1.4 s (36 atoms,
  loaded) per sample, log q within ≈ 0.05–0.4 nats of RK4 × 20 (measured before the probe moved
  to a finer reference); a 35-minute sampling budget over the 14 test peptides, so ≈ 100–300
  samples per peptide. Results: ``docs/benchmarks.md``.

  Earlier pilots (80 training peptides, 2000 steps, the E(3) field with the mirror fix) gave
  21–48 % valid samples on unseen peptides, mixed Cα chiralities (30–40 % of samples) being the
  main failure; the chiral field removes it (``bench/tbg_chirality.py``).
* **quick**: 12 training dipeptides × 10 ps, 3 test × 50 ps, EGNN 2 × 16, 60 steps, 32 samples
  per test peptide: a smoke run of every phase in a few minutes.
* **cuda** (``--device cuda``), sized for one 10-minute call of a lent GPU machine
  (``bench/tbg_device.sh`` carries the wheels and the MD there): the same data (built here
  first), EGNN 5 × 64 with ``sigma`` 0.001, 32 peptides × 8 frames per step in one padded
  batch, as many steps as fit in 270 s (``--train-budget``; timed on a 40-step probe, at most
  30000), the log-det by 12-node Gauss–Legendre quadrature along RK4 × 32 on the grid crowded
  toward t = 1 (power 2), a 150 s sampling budget (100–2000 samples per test peptide).

Numbers are wall-clock on this machine; the table's ESS and W2 from a few hundred samples are
noisy, and the script prints the sample count it used.

    .venv/bin/python bench/transferable.py              # the CPU benchmark (~2 h)
    .venv/bin/python bench/transferable.py --quick      # a smoke run (about 1.5 min)
    .venv/bin/python bench/transferable.py --device cuda  # larger model phases on a GPU
    .venv/bin/python bench/transferable.py --model tbg-ic   # the shipped tbg-ic, side by side

``--model tbg-ic`` trains nothing: it evaluates a ``tbg-ic`` run (``--run``; default the
pretrained model shipped in the package) on the same 14 held-out dipeptides, 10,000 samples
each, against the MD shipped with that model (the 310 K replica of 1 ns of parallel tempering
per peptide), and prints every column
as "CNF / tbg-ic" beside the CNF's rows of the ``cpu`` preset (``bench/results/tbg-cnf-cpu.json``,
the table in ``docs/benchmarks.md``; ``--cnf`` takes another run's ``evaluation.json``), with
training seconds and seconds per 10,000 samples.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch


@dataclass(frozen=True)
class Preset:
    """Everything the benchmark runs with: the MD of the dataset, the run's configuration (a
    nested ``model: tbg`` mapping; ``system.dataset`` is filled in), and the budgets."""

    n_train: int  # training dipeptides (0: all 386)
    n_test: int  # held-out dipeptides (first of TEST_SEQUENCES; 0: all 14)
    train_ns: float
    test_ns: float
    frame_interval_ps: float
    equilibration_ps: float
    workers: int
    sample_budget_s: float  # wall-clock for sampling all test peptides
    min_samples: int
    max_samples: int
    probe_samples: int  # samples of the cost measurement
    train_budget_s: float = 0.0  # > 0: as many steps (up to train.steps) as fit, from a probe
    config: dict[str, Any] = field(default_factory=dict)

    def changed(self, changes: dict[str, Any], **fields: Any) -> Preset:
        """A copy with ``{"section.key": value}`` config changes (validated) and field changes."""
        from boltzflow.models import config_with

        config = config_with(self.config, changes, source="bench/transferable.py preset")
        return replace(self, config=config.to_dict(), **fields)

    @property
    def steps(self) -> int:
        return int(self.config["train"]["steps"])


CPU_CONFIG = {
    "model": "tbg",
    "train": {"steps": 5000, "batch_size": 16 * 8, "lr": 5e-3, "checkpoint_every": 100},
    "sample": {"batch_size": 50},
    "tbg": {
        "hidden": 32, "n_layers": 4, "n_rbf": 16, "bond_graph": True, "chiral": True,
        "frames_per_peptide": 8, "sigma": 0.01, "amp": "bf16", "bucket_size": 4,
        "solver": "gauss-legendre", "solver_steps": 16, "quadrature_nodes": 8,
        "quadrature_power": 1.0,
    },
}

PRESETS = {
    "cpu": Preset(
        n_train=0, n_test=0, train_ns=0.02, test_ns=0.5, frame_interval_ps=0.5,
        equilibration_ps=5.0, workers=2, sample_budget_s=2100.0, min_samples=50,
        max_samples=1000, probe_samples=8, config=CPU_CONFIG,
    ),
    "quick": Preset(
        n_train=12, n_test=3, train_ns=0.01, test_ns=0.05, frame_interval_ps=0.5,
        equilibration_ps=2.0, workers=1, sample_budget_s=60.0, min_samples=32, max_samples=32,
        probe_samples=4,
        config={
            "model": "tbg",
            "train": {"steps": 60, "batch_size": 6 * 4, "lr": 5e-3, "checkpoint_every": 100},
            "sample": {"batch_size": 32},
            "tbg": {
                "hidden": 16, "n_layers": 2, "n_rbf": 8, "bond_graph": True, "chiral": True,
                "frames_per_peptide": 4, "amp": "bf16", "bucket_size": 3,
                "solver": "gauss-legendre", "solver_steps": 8, "quadrature_nodes": 6,
            },
        },
    ),
}
# Sized for one call of a lent GPU machine (10 minutes a command, 15 minutes in all; the MD
# travels with it): training gets 4.5 minutes, sampling 2.5, the rest is set-up and analysis.
PRESETS["cuda"] = PRESETS["cpu"].changed(
    {"tbg.hidden": 64, "tbg.n_layers": 5, "train.steps": 30000, "train.batch_size": 32 * 8,
     "tbg.bucket_size": 0, "tbg.sigma": 0.001, "tbg.quadrature_nodes": 12,
     "tbg.solver_steps": 32, "tbg.quadrature_power": 2.0, "sample.batch_size": 500},
    workers=min(16, os.cpu_count() or 1), train_budget_s=270.0, sample_budget_s=150.0,
    min_samples=100, max_samples=2000, probe_samples=100,
)


def _stamp(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def build_data(p: Preset, data: Path) -> tuple[list[str], list[str]]:
    """MD of the training and test dipeptides (resumable); returns their sequences."""
    from boltzflow.data.dipeptides import (
        TEST_SEQUENCES,
        build_dipeptide_dataset,
        default_train_sequences,
    )

    train = list(default_train_sequences())
    if p.n_train:
        step = len(train) / p.n_train  # spread over the alphabet, deterministic
        train = [train[int(i * step)] for i in range(p.n_train)]
    test = list(TEST_SEQUENCES[: p.n_test] if p.n_test else TEST_SEQUENCES)
    common = dict(frame_interval_ps=p.frame_interval_ps, equilibration_ps=p.equilibration_ps,
                  workers=p.workers, progress=False)
    t0 = time.perf_counter()
    build_dipeptide_dataset(data, train, ns=p.train_ns, **common)
    _stamp(f"train MD: {len(train)} peptides × {p.train_ns * 1000:g} ps "
           f"({time.perf_counter() - t0:.0f} s)")
    t0 = time.perf_counter()
    build_dipeptide_dataset(data, test, ns=p.test_ns, **common)
    _stamp(f"test MD: {len(test)} peptides × {p.test_ns * 1000:g} ps "
           f"({time.perf_counter() - t0:.0f} s)")
    return train, test


def train(p: Preset, data: Path, run: Path, device: str) -> None:
    """Train (or resume, or find finished) the preset's tbg run in ``run``."""
    from boltzflow import runs
    from boltzflow.models import config_with

    if p.train_budget_s > 0:
        p = p.changed({"train.steps": _steps_within_budget(p, data, run, device)})
    cfg = config_with(p.config, {
        "system.dataset": str(data), "train.device": device,
        "train.warmup": min(100, p.steps // 10),
    }, source="bench/transferable.py")
    t0 = time.perf_counter()
    runs.train(cfg, run, progress=False)
    _stamp(f"trained {cfg.train.steps} steps into {run} ({time.perf_counter() - t0:.0f} s)")


PROBE_STEPS = 40


def _steps_within_budget(p: Preset, data: Path, run: Path, device: str) -> int:
    """Training steps that fit ``p.train_budget_s`` (at most ``train.steps``).

    Timed on a throw-away run of :data:`PROBE_STEPS` steps: the seconds per step between its
    first and last log rows (start-up and the first steps' warm-up excluded), with a 10 %
    margin for checkpoints. A run directory that already holds a configuration keeps its step
    count, so an interrupted run resumes to the same end.
    """
    import csv
    import shutil

    from boltzflow import runs

    if (run / runs.CONFIG_NAME).exists() or (run / runs.TBG_V1_CONFIG).exists():
        return runs.read_run_config(run).train.steps
    probe = run.with_name(run.name + "-probe")
    shutil.rmtree(probe, ignore_errors=True)
    train(p.changed({"train.steps": PROBE_STEPS}, train_budget_s=0.0), data, probe, device)
    with (probe / "train_log.csv").open() as f:
        rows = list(csv.DictReader(f))
    shutil.rmtree(probe, ignore_errors=True)
    first, last = rows[0], rows[-1]
    per_step = (float(last["time"]) - float(first["time"])) / (int(last["step"]) - int(first["step"]))
    steps = max(PROBE_STEPS, min(p.steps, int(0.9 * p.train_budget_s / per_step)))
    _stamp(f"training budget {p.train_budget_s:.0f} s at {per_step * 1000:.0f} ms per step "
           f"(probe of {PROBE_STEPS}) → {steps} steps")
    return steps


#: The reference integrator of the cost probe: 32 nodes along RK4 × 128 crowded toward t = 1
#: (within 0.04 nats of RK4 × 80 with the divergence at every stage, which a uniform RK4 × 20
#: misses by 1.4 nats when the field was trained with sigma = 0.001).
FINE = {"tbg.solver": "gauss-legendre", "tbg.quadrature_nodes": 32, "tbg.solver_steps": 128,
        "tbg.quadrature_power": 3.0}


def measure_cost(run, p: Preset, test: list[str], data: Path) -> dict:
    """Seconds per sample with exact log q on a mid-size test peptide, and the log q error."""
    from boltzflow import runs, systems
    from boltzflow.data.dipeptides import load_index
    from boltzflow.sampling import draw

    index = load_index(data)
    sizes = sorted((index.entry(s).n_atoms, s) for s in test)
    n_atoms, seq = sizes[len(sizes) // 2]
    system = systems.get(f"dipeptide:{seq}")
    flow = run.model.flow_for(system)
    torch.manual_seed(123)
    t0 = time.perf_counter()
    samples = draw(flow, run.model.energy_of(system), p.probe_samples,
                   batch_size=p.probe_samples)
    per_sample = (time.perf_counter() - t0) / p.probe_samples
    k = min(4, p.probe_samples)
    x = samples.x[:k].to(run.model.device)
    fine = runs.load_run(run.path, changes={"train.device": run.config.train.device, **FINE})
    with torch.no_grad():
        reference = fine.model.flow_for(system).log_prob(x).cpu().double()
        own = flow.log_prob(x).cpu().double()
    err_sample = (samples.log_q[:k].cpu().double() - reference).abs()
    err_density = (own - reference).abs()
    return {
        "peptide": seq, "n_atoms": n_atoms, "seconds_per_sample": per_sample,
        "log_q_error_mean": float(err_sample.mean()), "log_q_error_max": float(err_sample.max()),
        "log_q_roundtrip_error_max": float(err_density.max()),
    }


def saved_sample_count(eval_dir: Path) -> int | None:
    """Samples per peptide of an earlier evaluation in ``eval_dir`` (``None`` if there is none),
    so that a rerun re-evaluates its saved samples instead of drawing a differently sized set."""
    for metrics in sorted(eval_dir.glob("*/metrics.json")):
        if (metrics.parent / "samples.npz").exists():
            return int(json.loads(metrics.read_text())["n_samples"])
    return None


#: The CNF's rows of the ``cpu`` preset as measured (docs/benchmarks.md), for the side by side.
CNF_RECORD = Path(__file__).parent / "results" / "tbg-cnf-cpu.json"

#: (heading, metric key, format) of the side-by-side table; each cell is "CNF / tbg-ic".
SIDE_COLUMNS = (
    ("ESS", "ess", "{:.2%}"), ("ESS n", "ess_samples", "{:.1f}"), ("σ log w", "log_w_spread", "{:.2f}"),
    ("valid", "fraction_valid", "{:.1%}"), ("E-W2 raw", "energy_w2_model", "{:.0f}"),
    ("E-W2 rw", "energy_w2_reweighted", "{:.1f}"), ("T-W2 raw", "torus_w2_model", "{:.2f}"),
    ("T-W2 rw", "torus_w2_reweighted", "{:.2f}"), ("ΔF ref (± block)", "dF_phi_md", "{:.2f}"),
    ("ΔF rw", "dF_phi_reweighted", "{:.2f}"),
)


def side_by_side(run_dir: Path | None, cnf_path: Path, n: int) -> None:
    """The tbg-ic model on the 14 held-out dipeptides (``n`` samples each, against the MD
    shipped with the pretrained model), printed beside the CNF's rows (``cnf_path``:
    an ``evaluation.json`` or the record of the ``cpu`` preset) with training seconds and
    seconds per 10,000 samples. Resumes: a peptide already evaluated with ``n`` samples is
    re-read, not re-sampled."""
    import numpy as np

    from boltzflow import pretrained, runs
    from boltzflow.analysis.split import mean_of, split_table

    run_dir = run_dir or pretrained.install("tbg-ic", Path("runs") / "bench-tbg-ic-side")
    run = runs.load_run(run_dir)
    references = pretrained.package_dir("tbg-ic") / pretrained.REFERENCES
    cnf = json.loads(Path(cnf_path).read_text())
    rows, results = {}, {}
    out = run_dir / f"eval-side-{n}"
    for k, seq in enumerate(sorted(cnf["peptides"])):
        system_id = f"dipeptide:{seq}"
        ref = torch.from_numpy(np.load(references / f"{runs.slug(system_id)}.npz")["positions"])
        t0 = time.perf_counter()
        result = runs.evaluate_molecule_dir(run, system_id, out / seq, n, ref,
                                            seed=k, plots=True, progress=False)
        rows[seq], results[seq] = result.metrics, result
        print(f"[{k + 1}/{len(cnf['peptides'])}] {seq}: {result.summary()} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    split_table(run.model, str(references), "test", rows, results, out, n)

    from boltzflow.training import load_checkpoint

    ic_train = float(load_checkpoint(run_dir / "checkpoint.pt").get("elapsed", float("nan")))
    ic_per_10k = 1e4 * (mean_of([r.get("sample_seconds_per_sample") for r in rows.values()])
                        or float("nan"))
    cnf_per_10k = 1e4 * cnf["sample_seconds"] / cnf["n_samples_total"]

    def cell(m: dict, key: str, fmt: str) -> str:
        v = m.get(key)
        if v is None:
            return "–"
        err = m.get(f"{key}_stderr") if key == "dF_phi_md" else None  # block error of the MD
        return fmt.format(v) + ("" if err is None else f" ± {err:.2f}")

    head = "| peptide | n | " + " | ".join(h for h, _, _ in SIDE_COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(SIDE_COLUMNS) + 2)]
    for seq in sorted(cnf["peptides"]):
        a, b = cnf["peptides"][seq], rows[seq]
        lines.append(f"| {seq} | {a['n_samples']} / {b['n_samples']} | " + " | ".join(
            f"{cell(a, key, fmt)} / {cell(b, key, fmt)}" for _, key, fmt in SIDE_COLUMNS) + " |")
    means = []
    for _, key, fmt in SIDE_COLUMNS:
        pair = []
        for table in (cnf["peptides"], rows):
            mean = None if key.startswith("dF") else mean_of([m.get(key) for m in table.values()])
            pair.append("" if mean is None else fmt.format(mean))
        means.append(" / ".join(pair) if any(pair) else "")
    lines.append("| **mean** | | " + " | ".join(means) + " |")
    print(f"\nCNF (tbg, {cnf['reference']}) / tbg-ic ({run.model.describe()}, step "
          f"{run.model.info.get('step')}; reference: {pretrained.provenance('tbg-ic')['references']}"
          "), each cell CNF / tbg-ic:\n")
    print("\n".join(lines))
    print(f"\ntraining: CNF {cnf['train_seconds']:.0f} s / tbg-ic {ic_train:.0f} s (the "
          f"checkpoint's, summed over resumes); seconds per 10,000 samples with exact log q and energies: CNF "
          f"{cnf_per_10k:.0f} s / tbg-ic {ic_per_10k:.0f} s")
    print(f"tbg-ic table and Ramachandran grid: {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the quick preset (~3 min)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--out", type=Path, default=None, help="[runs/bench-tbg(-quick)]")
    parser.add_argument("--steps", type=int, default=None, help="override train.steps")
    parser.add_argument(
        "--encoding", choices=["tbg-full+bonds", "tbg-full"], default="tbg-full+bonds",
        help="tbg-full: the paper's per-atom encoding alone (no bond graph, no RBF features)",
    )
    parser.add_argument(
        "--e3", action="store_true",
        help="the paper's E(3)-equivariant field with the mirror fix instead of the chiral one",
    )
    parser.add_argument("--sigma", type=float, default=None,
                        help="override tbg.sigma, the conditional path's width (field units) "
                        "[0.01]")
    parser.add_argument("--quadrature", type=str, default=None, metavar="NODES,STEPS,POWER",
                        help="sampling integrator: Gauss–Legendre nodes, RK4 steps, grid power "
                        "(t = 1 - (1 - s)^POWER) [8,16,1]; evaluates into RUN/qNODESxSTEPSpPOWER/")
    parser.add_argument("--train-budget", type=float, default=None, metavar="SECONDS",
                        help="train as many steps (up to the preset's) as fit in SECONDS, "
                        "timed on a 40-step probe [cuda: 270; others: the preset's steps]")
    parser.add_argument("--n-samples", type=int, default=None,
                        help="samples per test peptide (default: those of an earlier "
                        "evaluation, else sized from the cost probe)")
    parser.add_argument("--model", choices=["tbg", "tbg-ic"], default="tbg",
                        help="tbg-ic: the internal-coordinate model on the same 14 held-out "
                        "dipeptides, side by side with the CNF's recorded rows")
    parser.add_argument("--run", type=Path, default=None,
                        help="--model tbg-ic: its run [the shipped pretrained model, installed "
                        "into runs/bench-tbg-ic-side]")
    parser.add_argument("--cnf", type=Path, default=CNF_RECORD,
                        help="--model tbg-ic: the CNF's evaluation.json (or a record of one) "
                        "[%(default)s]")
    args = parser.parse_args()
    if args.model == "tbg-ic":
        side_by_side(args.run, args.cnf, args.n_samples or 10_000)
        return
    name = args.preset or ("quick" if args.quick else "cuda" if args.device == "cuda" else "cpu")
    p = PRESETS[name]
    if args.steps is not None:
        p = p.changed({"train.steps": args.steps})
    if args.train_budget is not None:
        if args.train_budget <= 0:
            parser.error(f"--train-budget must be > 0 seconds, got {args.train_budget:g}")
        p = replace(p, train_budget_s=args.train_budget)
    if args.sigma is not None and args.sigma != p.config["tbg"]["sigma"]:
        p = p.changed({"tbg.sigma": args.sigma})
        name += f"-sigma{args.sigma:g}"
    if args.encoding == "tbg-full":
        p = p.changed({"tbg.n_rbf": 0, "tbg.bond_graph": False})
        name += "-tbg-full"
    if args.e3:
        p = p.changed({"tbg.chiral": False})
        name += "-e3"
    out = args.out or Path("runs") / ("bench-tbg-quick" if name.startswith("quick") else "bench-tbg")
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)  # small graphs: a second thread gains little on 2 shared cores
    data, run_dir = out / "data", out / f"run-{name}"
    sampling: dict[str, Any] = {}  # the evaluation's integrator, if not the run's own
    variant = ""
    if args.quadrature is not None:  # sampling only: same run, its own evaluation
        nodes, steps, power = args.quadrature.split(",")
        sampling = {"tbg.solver": "gauss-legendre", "tbg.quadrature_nodes": int(nodes),
                    "tbg.solver_steps": int(steps), "tbg.quadrature_power": float(power)}
        variant = f"q{nodes}x{steps}p{power}"
    _stamp(f"preset {name}: {json.dumps(asdict(p))}")
    seconds: dict[str, float] = {}

    t0 = time.perf_counter()
    _, test = build_data(p, data)
    seconds["data"] = time.perf_counter() - t0

    from boltzflow import runs

    t0 = time.perf_counter()
    train(p, data, run_dir, args.device)
    run = runs.load_run(run_dir, changes={"train.device": args.device, **sampling})
    seconds["train"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    cost = measure_cost(run, p, test, data)
    seconds["cost probe"] = time.perf_counter() - t0
    if variant:
        # runs.evaluate_split writes RUN/eval-test; the variant's samples must not mix with the
        # run's own, so it evaluates a view of the run rooted in RUN/<variant>/
        run = replace(run, path=run_dir / variant)
    eval_dir = run.path / "eval-test"
    n = args.n_samples or saved_sample_count(eval_dir) or int(max(p.min_samples, min(
        p.max_samples, p.sample_budget_s / (len(test) * cost["seconds_per_sample"]))))
    _stamp(f"exact log q: {cost['seconds_per_sample']:.2f} s per sample on "
           f"{cost['peptide']} ({cost['n_atoms']} atoms); log q vs a fine quadrature "
           f"(32 nodes, RK4 × 128, power 3): mean "
           f"{cost['log_q_error_mean']:.3f}, max {cost['log_q_error_max']:.3f} nats → "
           f"{n} samples per test peptide")

    from boltzflow.analysis.split import format_table

    t0 = time.perf_counter()
    result = runs.evaluate_split(run, "test", n_samples=n, echo=_stamp)
    seconds["evaluate"] = time.perf_counter() - t0

    print("\n### Transferable BG on held-out dipeptides\n")
    print(format_table(result.rows, result.means))
    print(f"\nmean |ΔF rw − MD|: {result.means.get('dF_phi_abs_error')}")
    print("\nwall clock: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items())
          + f" (total {sum(seconds.values()) / 60:.1f} min)")
    print(f"table: {result.table}\ngrid:  {result.grid}")
    tag = f"{name}-{variant}" if variant else name
    summary = {"preset": tag, "settings": asdict(p), "config": run.config.to_dict(),
               "steps_trained": run.model.info.get("step"), "cost": cost, "n_samples": n,
               "seconds": seconds, "means": result.means, "table": str(result.table)}
    (out / f"summary-{tag}.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
