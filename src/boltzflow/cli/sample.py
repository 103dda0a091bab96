"""``boltzflow sample``: draw samples of a run's system (or, for a transferable model, of any
molecule it can encode) with ``log_q``, energies and importance weights."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import SOLVER_HELP, is_main, run_dir, sampling_changes, set_threads


def sample_cmd(
    run: str | None = typer.Option(None, "--run", "-r", help="Run directory written by `train`."),
    n: int = typer.Option(10_000, "-n", "--n-samples", help="Number of samples.", min=1),
    seed: int | None = typer.Option(None, "--seed", help="Sampling seed."),
    system: str | None = typer.Option(
        None, "--system", "-s", help="Molecule to sample with a transferable run (dipeptide:NY)."
    ),
    checkpoint: str | None = typer.Option(
        None, "--checkpoint", help="Older spelling of --run: a run's checkpoint.pt."
    ),
    device: str | None = typer.Option(None, "--device", help="cpu or cuda [the run's]."),
    solver: str | None = typer.Option(None, "--solver", help=SOLVER_HELP),
    solver_steps: int | None = typer.Option(None, "--solver-steps", min=1,
                                            help="RK4 steps of a CNF/tbg model [the run's]."),
    quadrature_power: float | None = typer.Option(
        None, "--quadrature-power", min=1.0,
        help="tbg: gauss-legendre grid t = 1 - (1 - s)^p [the run's].",
    ),
    quadrature_nodes: int | None = typer.Option(
        None, "--quadrature-nodes", min=1, help="tbg: gauss-legendre nodes [the run's]."
    ),
    out: Path | None = typer.Option(None, "--out", "-o", hidden=True),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Draw samples with log_q, energies and importance weights into samples.npz.

    The run's own system: RUN/samples.npz; another molecule of a transferable run:
    RUN/systems/<id>/samples.npz. Then `boltzflow evaluate` reweights and reports.
    """
    from .. import runs, systems
    from ..errors import BoltzflowError
    from ..sampling import effective_sample_size

    if out is not None:
        raise BoltzflowError("--out is gone: samples go into the run directory "
                             "(RUN/systems/<id>/ for another molecule of a transferable run)")
    set_threads()
    path = run_dir(run, checkpoint)
    model = runs.read_run_config(Path(path)).model
    loaded = runs.load_run(path, changes=sampling_changes(
        model, device, solver, solver_steps, quadrature_power,
        quadrature_nodes))
    target = systems.get(system) if system is not None else None
    samples = runs.sample(loaded, n, system=target, seed=seed, progress=progress)
    ess = effective_sample_size(samples.log_w)
    if is_main():
        where = loaded.dir_for(target or loaded.system) / runs.SAMPLES_NAME
        typer.echo(f"{len(samples)} samples → {where} (ESS {ess:.2%}, "
                   f"{ess * len(samples):.1f} effective samples)")
        what = f" --system {system}" if system else ""
        typer.echo(f"next: boltzflow evaluate --run {path}{what}")


def register(app: typer.Typer) -> None:
    """Add the command to ``app``."""
    app.command("sample")(sample_cmd)
