"""``boltzflow simulate``: OpenMM MD (optionally parallel tempering) into a resumable dataset."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import FF_HELP, SOLVENT_HELP, TEMP_HELP, set_threads


def simulate_cmd(
    system: str = typer.Argument(..., help="System id (see `boltzflow systems`) or a PDB file."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Dataset directory [data/<system>]."),
    ns: float = typer.Option(1.0, "--ns", help="Production length in ns (at the target temperature)."),
    timestep_fs: float = typer.Option(1.0, "--timestep-fs", help="Integration time step (fs)."),
    friction_per_ps: float = typer.Option(1.0, "--friction-per-ps", help="Langevin friction (1/ps)."),
    hydrogen_mass: float | None = typer.Option(
        None, "--hydrogen-mass",
        help="Hydrogen mass repartitioning (amu), e.g. 4 with --timestep-fs 2: the same "
        "configurations at half the cost (docs/md.md) [the force field's masses].",
    ),
    frame_interval_ps: float = typer.Option(
        0.02, "--frame-interval-ps",
        help="Frame spacing (ps); dense frames train better flows at the same MD length "
        "(docs/aldp.md: 0.2 ps → 0.05 ps took ESS from 10 % to 41 %; a Trp peptide's "
        "0.05 → 0.02 ps, 4.2 % to 6.3 %, docs/benchmarks.md).",
    ),
    equilibration_ps: float = typer.Option(100.0, "--equilibration-ps", help="Equilibration (ps)."),
    replicas: int | None = typer.Option(
        None, "--replicas", help="Parallel tempering: number of replicas (geometric ladder)."
    ),
    t_max: float = typer.Option(600.0, "--t-max", help="Highest replica temperature (K)."),
    exchange_interval_ps: float = typer.Option(1.0, "--exchange-interval-ps"),
    workers: int | None = typer.Option(
        None, "--workers", min=1,
        help="Processes the replicas run in [one per free core, at most one per replica].",
    ),
    seed: int = typer.Option(0, "--seed"),
    platform: str = typer.Option("Reference", "--platform", help="OpenMM platform."),
    forcefield: str | None = typer.Option(None, "--forcefield", help=FF_HELP),
    solvent: str | None = typer.Option(None, "--solvent", help=SOLVENT_HELP),
    temperature: float | None = typer.Option(None, "--temperature", help=TEMP_HELP),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Run Langevin MD (optionally parallel tempering) into a resumable dataset with provenance."""
    from .. import systems
    from ..errors import BoltzflowError
    from ..md import geometric_temperatures, simulate
    from ..systems.molecule import MolecularSystem

    set_threads()
    sys_obj = systems.resolve(system, forcefield=forcefield, solvent=solvent, temperature=temperature)
    if not isinstance(sys_obj, MolecularSystem):
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
            exchange_interval_ps=exchange_interval_ps, progress=progress, workers=workers,
            hydrogen_mass_amu=hydrogen_mass,
        )
    except KeyboardInterrupt:
        typer.echo(f"interrupted; completed chunks are kept in {out} — rerun the same command "
                   "to resume", err=True)
        raise typer.Exit(130) from None
    typer.echo(f"{len(dataset)} frames → {out}")
    typer.echo(f"train on it: boltzflow train --system {system} --data {out}")


def register(app: typer.Typer) -> None:
    """Add the command to ``app``."""
    app.command("simulate")(simulate_cmd)
