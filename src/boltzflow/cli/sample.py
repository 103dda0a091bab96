"""``boltzflow sample``: draw samples of a run's system (or, for a transferable model, of any
molecule it can encode) with ``log_q``, energies and importance weights."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import SOLVER_HELP, is_main, run_dir, sampling_changes, set_threads


def sample_cmd(
    run: str | None = typer.Option(None, "--run", "-r", help="Run directory written by `train`."),
    model: str | None = typer.Option(
        None, "--model", "-m",
        help="A pretrained model shipped with boltzflow (tbg-ic): sample it without training; "
        "its run directory is --run [runs/pretrained-MODEL], created on first use.",
    ),
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
    refine: str = typer.Option(
        "none", "--refine",
        help="Move the flow's samples toward the target: ais (annealed importance sampling, "
        "weights kept) or smc (with resampling) [none].",
    ),
    levels: int = typer.Option(20, "--levels", help="With --refine: intermediate densities."),
    mcmc_steps: int = typer.Option(2, "--mcmc-steps", help="With --refine: MALA moves per level."),
    step_size: float = typer.Option(
        0.2, "--step-size", help="With --refine: initial MALA step (tuned on a pilot run)."
    ),
    out: Path | None = typer.Option(None, "--out", "-o", hidden=True),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Draw samples with log_q, energies and importance weights into samples.npz.

    With --refine ais|smc the samples are moved toward the target through --levels
    intermediate densities by MALA (exact weights; refine.json says what it did).

    The run's own system: RUN/samples.npz; another molecule of a transferable run:
    RUN/systems/<id>/samples.npz. Then `boltzflow evaluate` reweights and reports.

    --model tbg-ic samples the pretrained transferable model shipped with boltzflow (no
    training, nothing downloaded): boltzflow sample --model tbg-ic --system dipeptide:NY.
    """
    import json

    from .. import runs, systems
    from ..errors import BoltzflowError
    from ..sampling import effective_sample_size
    from ..sampling.refine import RefineOptions, refine_summary

    if out is not None:
        raise BoltzflowError("--out is gone: samples go into the run directory "
                             "(RUN/systems/<id>/ for another molecule of a transferable run)")
    set_threads()
    if model is not None:
        from .. import pretrained

        if checkpoint is not None:
            raise BoltzflowError("give --model (a pretrained model) or --checkpoint, not both")
        path = str(pretrained.install(model, run))
        if is_main():
            data = pretrained.provenance(model)["dataset"]
            typer.echo(f"pretrained {model!r} model (trained on {len(data['train'])} dipeptides of "
                       f"{data['name']!r}; `boltzflow info {model}`) → run directory {path}")
    else:
        path = run_dir(run, checkpoint)
    model = runs.read_run_config(Path(path)).model
    loaded = runs.load_run(path, changes=sampling_changes(
        model, device, solver, solver_steps, quadrature_power,
        quadrature_nodes))
    target = systems.get(system) if system is not None else None
    options = None
    if refine != "none":
        options = RefineOptions(method=refine, levels=levels, steps=mcmc_steps,
                                step_size=step_size)
    samples = runs.sample(loaded, n, system=target, seed=seed, progress=progress,
                          refine=options)
    ess = effective_sample_size(samples.log_w)
    if is_main():
        where = loaded.dir_for(target or loaded.system)
        typer.echo(f"{len(samples)} samples → {where / runs.SAMPLES_NAME} (ESS {ess:.2%}, "
                   f"{ess * len(samples):.1f} effective samples)")
        if options is not None:
            typer.echo(refine_summary(json.loads((where / runs.REFINE_NAME).read_text())))
        what = f" --system {system}" if system else ""
        typer.echo(f"next: boltzflow evaluate --run {path}{what}")


def register(app: typer.Typer) -> None:
    """Add the command to ``app``."""
    app.command("sample")(sample_cmd)
