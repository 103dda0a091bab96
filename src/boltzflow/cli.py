"""The ``boltzflow`` command line: thin commands over :mod:`boltzflow.pipeline`.

A user mistake exits with status 2 and one line on stderr; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from .errors import BoltzflowError

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Boltzmann generators: train flows on Boltzmann densities, sample, reweight, report.",
)

_FF_HELP = "Force field for a PDB system: amber14 or amber99sb-ildn [amber14]."
_SOLVENT_HELP = "Solvent model for a PDB system: vacuum, obc1 or obc2 [obc2]."
_TEMP_HELP = "Temperature in kelvin for a PDB system [300]."
_DEBUG_HELP = "Show full tracebacks (also accepted before the command: boltzflow --debug ...)."


def _threads() -> None:
    # More torch threads than free cores is 5-12x slower on small models.
    import os

    import torch

    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))


def _is_main() -> bool:
    from .training.distributed import world

    return world().is_main


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help=_DEBUG_HELP)) -> None:
    """Boltzmann generators: train flows on Boltzmann densities, sample, reweight, report."""


@app.command("systems")
def systems_cmd() -> None:
    """List the named target systems."""
    from rich.console import Console
    from rich.table import Table

    from . import systems

    table = Table("id", "description")
    for sid, desc in systems.available().items():
        table.add_row(sid, desc)
    Console().print(table)


@app.command("train")
def train_cmd(
    system: str | None = typer.Option(
        None, "--system", "-s", help="System id (see `boltzflow systems`) or a PDB file."
    ),
    config: Path | None = typer.Option(None, "--config", "-c", help="TOML or YAML config file."),
    model: str | None = typer.Option(
        None, "--model", "-m",
        help="spline or affine (coupling flow), cnf (equivariant CNF, flow matching); "
        "overrides config. tbg: transferable Boltzmann generator over a --dataset of dipeptides "
        "(--config then holds tbg keys, see docs/transferable.md).",
    ),
    dataset: Path | None = typer.Option(
        None, "--dataset", help="Dipeptide dataset (`boltzflow dataset dipeptides`), for --model tbg."
    ),
    data: Path | None = typer.Option(
        None, "--data", help="MD dataset (from `boltzflow simulate`) for molecules."
    ),
    forcefield: str | None = typer.Option(None, "--forcefield", help=_FF_HELP),
    solvent: str | None = typer.Option(None, "--solvent", help=_SOLVENT_HELP),
    temperature: float | None = typer.Option(None, "--temperature", help=_TEMP_HELP),
    out: Path | None = typer.Option(None, "--out", "-o", help="Run directory [runs/<system>]."),
    steps: int | None = typer.Option(None, "--steps", help="Training steps (overrides config)."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed (overrides config)."),
    device: str | None = typer.Option(None, "--device", help="cpu or cuda."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Train a Boltzmann generator; resumes when --out holds the same unfinished run."""
    from . import pipeline
    from .config import TrainConfig, read_config_file

    _threads()
    if model == "tbg":
        from .transferable.commands import train_command

        train_command(
            dataset=dataset, config=config, out=out, steps=steps, seed=seed, device=device,
            progress=progress, echo=typer.echo,
        )
        return
    if dataset is not None:
        raise BoltzflowError("--dataset is for --model tbg; a single molecule's MD goes in --data")
    values = read_config_file(config) if config is not None else {}
    if model is not None:  # before validation: the model decides defaults (w_kl is 0 for cnf)
        values = {**values, "model": model}
    cfg = TrainConfig.from_dict(values, source=str(config) if config else "config")
    cfg = cfg.replace(
        system=system, steps=steps, seed=seed, device=device, forcefield=forcefield,
        solvent=solvent, temperature=temperature, data=str(data) if data else None,
    )
    pipeline.resolve_system(cfg)  # fail fast on an unknown id or a bad PDB
    out = out or Path("runs") / Path(cfg.system).stem.replace(":", "-")
    run = pipeline.train(cfg, out, progress=progress)
    if _is_main():
        typer.echo(f"trained {cfg.system} for {cfg.steps} steps → {run.path}")
        typer.echo(f"next: boltzflow sample --run {run.path} -n {cfg.n_samples}")


@app.command("sample")
def sample_cmd(
    run: Path | None = typer.Option(None, "--run", "-r", help="Run directory written by `train`."),
    n: int = typer.Option(10_000, "-n", "--n-samples", help="Number of samples.", min=1),
    seed: int | None = typer.Option(None, "--seed", help="Sampling seed."),
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", help="Transferable BG checkpoint (--model tbg) instead of --run."
    ),
    system: str | None = typer.Option(None, "--system", "-s", help="With --checkpoint: e.g. dipeptide:NY."),
    out: Path | None = typer.Option(None, "--out", "-o", help="With --checkpoint: output directory."),
    reference: Path | None = typer.Option(
        None, "--reference", help="With --checkpoint: MD (dataset or dipeptide dataset) to compare with."
    ),
    device: str | None = typer.Option(None, "--device", help="With --checkpoint: cpu or cuda."),
    solver: str | None = typer.Option(
        None, "--solver", help="With --checkpoint: rk4, dopri5 or gauss-legendre [the model's]."
    ),
    solver_steps: int | None = typer.Option(
        None, "--solver-steps", min=1, help="With --checkpoint: RK4 steps [the model's]."
    ),
    quadrature_power: float | None = typer.Option(
        None, "--quadrature-power", min=1.0,
        help="With --checkpoint: gauss-legendre grid t = 1 - (1 - s)^p [the model's].",
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Draw samples with log_q, energies and importance weights into RUN/samples.npz.

    With --checkpoint (transferable BG): zero-shot samples of --system with exact log_q, the
    mirror fix, validity, analysis and report.md, all in --out.
    """
    from . import pipeline
    from .sampling import effective_sample_size

    _threads()
    if checkpoint is not None:
        from .transferable.commands import sample_command

        sample_command(
            checkpoint=checkpoint, system=system, n=n, out=out, reference=reference, seed=seed,
            device=device, solver=solver, solver_steps=solver_steps, progress=progress,
            echo=typer.echo, quadrature_power=quadrature_power,
        )
        return
    if run is None:
        raise BoltzflowError("give --run RUN (or --checkpoint CKPT --system ID for a tbg model)")
    loaded = pipeline.load_run(run)
    samples = pipeline.sample(loaded, n, seed=seed, progress=progress)
    ess = effective_sample_size(samples.log_w)
    if _is_main():
        typer.echo(f"{len(samples)} samples → {run / pipeline.SAMPLES_NAME} (ESS {ess:.3f})")


@app.command("evaluate")
def evaluate_cmd(
    run: Path | None = typer.Option(None, "--run", "-r", help="Run directory written by `train`."),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Write figures and report.md."),
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", help="Transferable BG checkpoint: evaluate over a --dataset split."
    ),
    dataset: Path | None = typer.Option(None, "--dataset", help="With --checkpoint: dipeptide dataset."),
    split: str = typer.Option("test", "--split", help="With --checkpoint: test, train or all."),
    n_samples: int = typer.Option(
        1000, "--n-samples", "-n", min=1, help="With --checkpoint: samples per peptide."
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="With --checkpoint: output directory."),
    seed: int | None = typer.Option(None, "--seed", help="With --checkpoint: sampling seed."),
    device: str | None = typer.Option(None, "--device", help="With --checkpoint: cpu or cuda."),
    solver: str | None = typer.Option(
        None, "--solver", help="With --checkpoint: rk4, dopri5 or gauss-legendre [the model's]."
    ),
    solver_steps: int | None = typer.Option(
        None, "--solver-steps", min=1, help="With --checkpoint: RK4 steps [the model's]."
    ),
    quadrature_power: float | None = typer.Option(
        None, "--quadrature-power", min=1.0,
        help="With --checkpoint: gauss-legendre grid t = 1 - (1 - s)^p [the model's].",
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Compute metrics (ESS, clipped ESS, NLL, ΔF) and write metrics.json, figures, report.md.

    With --checkpoint (transferable BG): sample every peptide of --split zero-shot and write a
    per-peptide table (ESS, valid %, E-W2, T-W2, ΔF vs MD), means and a Ramachandran grid.
    """
    from . import pipeline

    _threads()
    if checkpoint is not None:
        from .transferable.commands import evaluate_command

        evaluate_command(
            checkpoint=checkpoint, dataset=dataset, split=split, n_samples=n_samples, out=out,
            seed=seed, device=device, solver=solver, solver_steps=solver_steps, plots=plots,
            progress=progress, echo=typer.echo, quadrature_power=quadrature_power,
        )
        return
    if run is None:
        raise BoltzflowError("give --run RUN (or --checkpoint CKPT --dataset DIR for a tbg model)")
    metrics = pipeline.evaluate(pipeline.load_run(run), plots=plots)
    typer.echo(json.dumps(metrics, indent=2))
    if plots:
        typer.echo(f"report: {run / 'report.md'}")


@app.command("report")
def report_cmd(
    run: Path = typer.Option(..., "--run", "-r", help="Run directory written by `train`."),
) -> None:
    """Write RUN/report.md with the figures (Ramachandran, φ profile, energies) and metrics."""
    from . import pipeline

    _threads()
    pipeline.evaluate(pipeline.load_run(run), plots=True)
    typer.echo(f"report: {run / 'report.md'}")


@app.command("simulate")
def simulate_cmd(
    system: str = typer.Argument(..., help="System id (see `boltzflow systems`) or a PDB file."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Dataset directory [data/<system>]."),
    ns: float = typer.Option(1.0, "--ns", help="Production length in ns (at the target temperature)."),
    timestep_fs: float = typer.Option(1.0, "--timestep-fs", help="Integration time step (fs)."),
    friction_per_ps: float = typer.Option(1.0, "--friction-per-ps", help="Langevin friction (1/ps)."),
    frame_interval_ps: float = typer.Option(1.0, "--frame-interval-ps", help="Frame spacing (ps)."),
    equilibration_ps: float = typer.Option(100.0, "--equilibration-ps", help="Equilibration (ps)."),
    replicas: int | None = typer.Option(
        None, "--replicas", help="Parallel tempering: number of replicas (geometric ladder)."
    ),
    t_max: float = typer.Option(600.0, "--t-max", help="Highest replica temperature (K)."),
    exchange_interval_ps: float = typer.Option(1.0, "--exchange-interval-ps"),
    seed: int = typer.Option(0, "--seed"),
    platform: str = typer.Option("Reference", "--platform", help="OpenMM platform."),
    forcefield: str | None = typer.Option(None, "--forcefield", help=_FF_HELP),
    solvent: str | None = typer.Option(None, "--solvent", help=_SOLVENT_HELP),
    temperature: float | None = typer.Option(None, "--temperature", help=_TEMP_HELP),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Run Langevin MD (optionally parallel tempering) into a resumable dataset with provenance."""
    from . import systems
    from .md import geometric_temperatures, simulate

    _threads()
    sys_obj = systems.resolve(system, forcefield=forcefield, solvent=solvent, temperature=temperature)
    if not hasattr(sys_obj, "openmm_system"):
        raise BoltzflowError(f"system {system!r} is not a molecule; MD needs a molecular system")
    ladder = None
    if replicas is not None:
        if replicas < 2:
            raise BoltzflowError("--replicas must be at least 2 for parallel tempering")
        ladder = geometric_temperatures(sys_obj.temperature, t_max, replicas)
    out = out or Path("data") / Path(system).stem.replace(":", "-")
    try:
        dataset = simulate(
            sys_obj, out, ns=ns, timestep_fs=timestep_fs, friction_per_ps=friction_per_ps,
            frame_interval_ps=frame_interval_ps, equilibration_ps=equilibration_ps,
            seed=seed, platform=platform, replicas=ladder,
            exchange_interval_ps=exchange_interval_ps, progress=progress,
        )
    except KeyboardInterrupt:
        typer.echo(f"interrupted; completed chunks are kept in {out} — rerun the same command "
                   "to resume", err=True)
        raise typer.Exit(130) from None
    typer.echo(f"{len(dataset)} frames → {out}")
    typer.echo(f"train on it: boltzflow train --system {system} --data {out}")


@app.command("info")
def info_cmd(dataset: Path = typer.Argument(..., help="Dataset directory.")) -> None:
    """Show a dataset's provenance: system, force field, temperature, integrator, frames."""
    from .data import info

    typer.echo(info(dataset))


dataset_app = typer.Typer(
    no_args_is_help=True, help="Build and inspect multi-molecule datasets (dipeptides)."
)
app.add_typer(dataset_app, name="dataset")


@dataset_app.command("dipeptides")
def dataset_dipeptides_cmd(
    out: Path = typer.Option(..., "--out", "-o", help="Dataset directory (one MD dataset per peptide)."),
    sequences: str | None = typer.Option(None, "--sequences", help="Comma-separated, e.g. AC,KI,NY."),
    all_: bool = typer.Option(False, "--all", help="All 400 dipeptides of the 20 amino acids."),
    split: str | None = typer.Option(None, "--split", help="train or test (see docs/dipeptides.md)."),
    ns: float = typer.Option(0.5, "--ns", help="Production MD per peptide (ns)."),
    frame_interval_ps: float = typer.Option(1.0, "--frame-interval-ps", help="Frame spacing (ps)."),
    timestep_fs: float = typer.Option(1.0, "--timestep-fs", help="Integration time step (fs)."),
    equilibration_ps: float = typer.Option(100.0, "--equilibration-ps", help="Equilibration (ps)."),
    replicas: int = typer.Option(1, "--replicas", help="1: plain MD; n >= 2: parallel tempering."),
    t_max: float = typer.Option(600.0, "--t-max", help="Highest replica temperature (K)."),
    exchange_interval_ps: float = typer.Option(1.0, "--exchange-interval-ps"),
    workers: int = typer.Option(1, "--workers", help="Local worker processes (per torchrun rank)."),
    seed: int = typer.Option(0, "--seed", help="Base seed; each peptide's seed depends on it and XY."),
    platform: str = typer.Option("Reference", "--platform", help="OpenMM platform."),
    frames_per_chunk: int = typer.Option(1000, "--frames-per-chunk", help="Frames per chunk file."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """MD of many dipeptides (resumable; shards over --workers and torchrun ranks) + index.json."""
    import os

    from .data import dipeptides as dp

    chosen = [name for name, given in [("--sequences", sequences), ("--all", all_),
                                       ("--split", split)] if given]
    if len(chosen) != 1:
        raise BoltzflowError(f"give exactly one of --sequences, --all or --split (got "
                             f"{', '.join(chosen) or 'none'})")
    if split is not None and split not in ("train", "test"):
        raise BoltzflowError(f"--split must be train or test, got {split!r}")
    if sequences is not None:
        seqs: list[str] | tuple[str, ...] = dp.normalize_sequences(sequences)
    elif all_:
        seqs = dp.all_sequences()
    else:
        seqs = dp.TEST_SEQUENCES if split == "test" else dp.default_train_sequences()
    try:
        index = dp.build_dipeptide_dataset(
            out, seqs, ns=ns, frame_interval_ps=frame_interval_ps, timestep_fs=timestep_fs,
            equilibration_ps=equilibration_ps, replicas=replicas, t_max=t_max,
            exchange_interval_ps=exchange_interval_ps, workers=workers, seed=seed,
            platform=platform, frames_per_chunk=frames_per_chunk, progress=progress,
        )
    except KeyboardInterrupt:
        typer.echo(f"interrupted; finished peptides are kept in {out} — rerun the same command "
                   "to resume", err=True)
        raise typer.Exit(130) from None
    if os.environ.get("RANK", "0") == "0":
        n_test = len(index.sequences("test"))
        typer.echo(f"{len(index)} peptides ({len(index) - n_test} train, {n_test} test) → "
                   f"{Path(out) / dp.INDEX_NAME}")


@dataset_app.command("info")
def dataset_info_cmd(directory: Path = typer.Argument(..., help="Dipeptide dataset directory.")) -> None:
    """List the peptides of a dipeptide dataset: sequence, split, atoms, frames."""
    from rich.console import Console
    from rich.table import Table

    from .data.dipeptides import load_index

    index = load_index(directory)
    md = index.md
    n_test = len(index.sequences("test"))
    typer.echo(f"{index.root}: {len(index)} peptides ({len(index) - n_test} train, {n_test} "
               f"test); MD {md.get('ns')} ns per peptide, a frame every "
               f"{md.get('frame_interval_ps')} ps, replicas {md.get('replicas')}, seed "
               f"{md.get('seed')}")
    table = Table("sequence", "split", "atoms", "frames")
    for p in index.peptides:
        table.add_row(p.sequence, p.split, str(p.n_atoms), str(p.n_frames))
    Console().print(table)


@app.command("demo")
def demo_cmd(
    out: Path | None = typer.Option(
        None, "--out", "-o",
        help="Run directory (default runs/demo, runs/demo-quality with --quality, runs/demo-SYSTEM "
        "for a toy).",
    ),
    system: str = typer.Option(
        "aldp-implicit", "--system", "-s",
        help="aldp-implicit (MD reference + molecular Boltzmann generator) or a toy system id "
        "(e.g. double-well: reference samples built in).",
    ),
    quality: bool = typer.Option(
        False, "--quality", help="Longer MD and training (boltzflow.presets.QUALITY_ALDP, about 40 min)."
    ),
    steps: int | None = typer.Option(None, "--steps", help="Training steps (overrides the preset)."),
    ns: float | None = typer.Option(None, "--ns", hidden=True, help="MD length (ns), for tests."),
    n_samples: int | None = typer.Option(None, "--n-samples", hidden=True, help="For tests."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """The main job: MD reference, train, sample, reweight, report (8-12 min on 2 cores)."""
    import os
    import time

    import torch

    from . import pipeline
    from .config import TrainConfig
    from .presets import QUALITY_ALDP, QUICK_ALDP

    if "OMP_NUM_THREADS" not in os.environ:
        # One thread: these small models gain little from two, and lose up to 60x when another
        # job holds a core (OpenMP threads spin; measured on 2 cores: 0.11 vs 6.7 s per step).
        torch.set_num_threads(1)
    t_start = time.perf_counter()
    if system == QUICK_ALDP.system:
        from .demo import run_molecular_demo

        preset = QUALITY_ALDP if quality else QUICK_ALDP
        preset = preset.replace(
            md={} if ns is None else {"ns": ns},
            train={k: v for k, v in (("steps", steps), ("n_samples", n_samples)) if v is not None},
        )
        out = out or Path("runs/demo-quality" if quality else "runs/demo")
        result = run_molecular_demo(preset, out, progress=progress, echo=typer.echo)
        m = result.metrics
        typer.echo(
            f"valid samples {m['fraction_valid']:.1%}; ESS {m['ess']:.2%} (clipped "
            f"{m['ess_clipped']:.2%}); NLL {m.get('nll', float('nan')):.1f} nats"
        )
        if m.get("dF_phi_reweighted") is not None and m.get("dF_phi_md") is not None:
            typer.echo(
                f"ΔF(φ>0 − φ<0): reweighted {m['dF_phi_reweighted']:.2f} ± "
                f"{m['dF_phi_reweighted_stderr']:.2f} kT, MD {m['dF_phi_md']:.2f} ± "
                f"{m['dF_phi_md_stderr']:.2f} kT"
            )
        stages = ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items())
        typer.echo(f"wall clock {time.perf_counter() - t_start:.0f} s ({stages})")
        typer.echo(f"report: {result.report}")
        typer.echo(f"plots:  {', '.join(str(p) for p in result.figures)}")
        return
    if quality:
        raise BoltzflowError(f"--quality is a preset for {QUICK_ALDP.system}, not for {system!r}")
    cfg = TrainConfig(system=system).replace(steps=steps, n_samples=n_samples)
    pipeline.resolve_system(cfg)  # fail fast on an unknown id
    out = out or Path("runs") / f"demo-{Path(cfg.system).stem.replace(':', '-')}"
    typer.echo(f"[1/3] training a {cfg.model} flow on {cfg.system} ({cfg.steps} steps) …")
    run = pipeline.train(cfg, out, progress=progress)
    typer.echo(f"[2/3] sampling {cfg.n_samples} configurations …")
    pipeline.sample(run, cfg.n_samples, progress=progress)
    typer.echo("[3/3] evaluating …")
    m = pipeline.evaluate(run)
    typer.echo(f"ESS {m['ess']:.3f} (clipped {m['ess_clipped']:.3f}), NLL {m.get('nll', float('nan')):.3f}")
    if "dF_exact" in m:
        a, b = run.system.region_labels
        typer.echo(
            f"ΔF({b} − {a}): reweighted {m['dF_reweighted']:.3f} ± {m['dF_reweighted_stderr']:.3f} kT, "
            f"exact {m['dF_exact']:.3f} kT"
        )
    typer.echo(f"report: {out / 'report.md'}")
    typer.echo(f"plots:  {', '.join(str(p) for p in sorted(out.glob('*.png')))}")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: runs the app, turning user mistakes into one clean line."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    try:
        app(args=args, prog_name="boltzflow")  # exits; typer reports its own usage errors
    except BoltzflowError as exc:
        if debug:
            raise
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
