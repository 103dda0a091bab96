"""``boltzflow dataset``: build and inspect multi-molecule datasets (dipeptides)."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import is_main

app = typer.Typer(
    no_args_is_help=True, help="Build and inspect multi-molecule datasets (dipeptides)."
)


@app.command("dipeptides")
def dataset_dipeptides_cmd(
    out: Path = typer.Option(..., "--out", "-o", help="Dataset directory (one MD dataset per peptide)."),
    sequences: str | None = typer.Option(None, "--sequences", help="Comma-separated, e.g. AC,KI,NY."),
    all_: bool = typer.Option(False, "--all", help="All 400 dipeptides of the 20 amino acids."),
    split: str | None = typer.Option(None, "--split", help="train or test (see docs/dipeptides.md)."),
    ns: float = typer.Option(0.5, "--ns", help="Production MD per peptide (ns)."),
    frame_interval_ps: float = typer.Option(1.0, "--frame-interval-ps", help="Frame spacing (ps)."),
    timestep_fs: float = typer.Option(1.0, "--timestep-fs", help="Integration time step (fs)."),
    hydrogen_mass: float | None = typer.Option(
        None, "--hydrogen-mass",
        help="Hydrogen mass repartitioning (amu), e.g. 3 with --timestep-fs 2 (docs/md.md).",
    ),
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
    from ..data import dipeptides as dp
    from ..errors import BoltzflowError

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
            hydrogen_mass_amu=hydrogen_mass,
        )
    except KeyboardInterrupt:
        typer.echo(f"interrupted; finished peptides are kept in {out} — rerun the same command "
                   "to resume", err=True)
        raise typer.Exit(130) from None
    if is_main():
        n_test = len(index.sequences("test"))
        typer.echo(f"{len(index)} peptides ({len(index) - n_test} train, {n_test} test) → "
                   f"{Path(out) / dp.INDEX_NAME}")


@app.command("info")
def dataset_info_cmd(directory: Path = typer.Argument(..., help="Dipeptide dataset directory.")) -> None:
    """List the peptides of a dipeptide dataset: sequence, split, atoms, frames."""
    from rich.console import Console
    from rich.table import Table

    from ..data.dipeptides import load_index

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
