"""``boltzflow evaluate``: metrics, figures and report of a run's samples, or of every molecule
of a dataset split for a transferable run."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from .common import SOLVER_HELP, few_samples_warning, run_dir, sampling_changes, set_threads


def evaluate_cmd(
    run: str | None = typer.Option(None, "--run", "-r", help="Run directory written by `train`."),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Write figures and report.md."),
    system: str | None = typer.Option(
        None, "--system", "-s", help="A molecule of a transferable run (dipeptide:NY)."
    ),
    split: str | None = typer.Option(
        None, "--split", help="Transferable run: evaluate every molecule of test, train or all."
    ),
    n_samples: int | None = typer.Option(
        None, "--n-samples", "-n", min=1, help="Samples per molecule [the run's sample.n_samples]."
    ),
    reference: Path | None = typer.Option(
        None, "--reference", help="MD of --system (a dataset or a dipeptide dataset) [the run's]."
    ),
    dataset: Path | None = typer.Option(
        None, "--dataset", help="Transferable run: the dataset of --split [the run's]."
    ),
    checkpoint: str | None = typer.Option(
        None, "--checkpoint", help="Older spelling of --run: a run's checkpoint.pt."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Sampling seed."),
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
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Compute metrics (ESS and effective samples, NLL, ΔF, W2) and write metrics.json,
    figures and report.md (samples are drawn first if there are none).

    With --split (transferable run): every molecule of the split zero-shot, a per-molecule
    table (ESS, valid %, E-W2, T-W2, ΔF vs MD), means and a Ramachandran grid in RUN/eval-SPLIT.
    """
    from .. import runs, systems

    set_threads()
    path = run_dir(run, checkpoint)
    model = runs.read_run_config(Path(path)).model
    changes = sampling_changes(model, device, solver, solver_steps, quadrature_power,
        quadrature_nodes)
    changes["system.dataset"] = str(dataset) if dataset else None
    changes["sample.n_samples"] = n_samples
    loaded = runs.load_run(path, changes=changes)
    if split is not None:
        result = runs.evaluate_split(loaded, split, seed=seed or 0, plots=plots, echo=typer.echo,
                                     progress=progress)
        from ..analysis.split import format_table

        typer.echo(format_table(result.rows, result.means))
        typer.echo(f"table: {result.table}" + (f"; grid: {result.grid}" if result.grid else ""))
        return
    target = systems.get(system) if system is not None else None
    frames = runs.reference_frames(loaded, target, reference) if target is not None else None
    metrics = runs.evaluate(loaded, system=target, reference=frames, plots=plots, seed=seed)
    typer.echo(json.dumps(metrics, indent=2))
    if (warning := few_samples_warning(metrics)) is not None:
        typer.echo(warning, err=True)
    if plots:
        typer.echo(f"report: {loaded.dir_for(target or loaded.system) / 'report.md'}")


def report_cmd(run: str = typer.Option(..., "--run", "-r")) -> None:
    """Older command: now `boltzflow evaluate --run RUN` (which writes the report)."""
    from ..errors import BoltzflowError

    raise BoltzflowError(f"`boltzflow report` is now `boltzflow evaluate --run {run}`")


def register(app: typer.Typer) -> None:
    """Add the commands to ``app``."""
    app.command("evaluate")(evaluate_cmd)
    app.command("report", hidden=True)(report_cmd)
