"""``boltzflow train``: train any model kind into a run directory (resumable)."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import FF_HELP, SOLVENT_HELP, TEMP_HELP, is_main, set_threads


def train_cmd(
    system: str | None = typer.Option(
        None, "--system", "-s", help="System id (see `boltzflow systems`) or a PDB file."
    ),
    config: Path | None = typer.Option(None, "--config", "-c", help="TOML or YAML config file."),
    model: str | None = typer.Option(
        None, "--model", "-m",
        help="coupling (toys), internal (molecules), cnf (equivariant CNF, flow matching) or "
        "tbg (transferable, over a --dataset) [auto: internal for molecules, else coupling].",
    ),
    dataset: Path | None = typer.Option(
        None, "--dataset", help="Multi-molecule dataset (`boltzflow dataset dipeptides`), tbg."
    ),
    data: Path | None = typer.Option(
        None, "--data", help="MD dataset (from `boltzflow simulate`) for a molecule."
    ),
    forcefield: str | None = typer.Option(None, "--forcefield", help=FF_HELP),
    solvent: str | None = typer.Option(None, "--solvent", help=SOLVENT_HELP),
    temperature: float | None = typer.Option(None, "--temperature", help=TEMP_HELP),
    out: Path | None = typer.Option(None, "--out", "-o", help="Run directory [runs/<system>]."),
    steps: int | None = typer.Option(None, "--steps", help="Training steps (overrides config)."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed (overrides config)."),
    device: str | None = typer.Option(None, "--device", help="cpu or cuda."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Train a Boltzmann generator; resumes when --out holds the same unfinished run."""
    from .. import runs
    from ..config import read_config_file
    from ..models import config_with, get_kind

    set_threads()
    values = read_config_file(config) if config is not None else {}
    cfg = config_with(values, {
        "model": model, "system.id": system, "system.dataset": str(dataset) if dataset else None,
        "system.data": str(data) if data else None, "system.forcefield": forcefield,
        "system.solvent": solvent, "system.temperature": temperature, "train.steps": steps,
        "train.seed": seed, "train.device": device,
    }, source=str(config) if config else "options")
    name = cfg.system.id or f"{cfg.model}-{Path(cfg.system.dataset).name}"
    out = out or Path("runs") / runs.slug(name)
    if not get_kind(cfg.model).transferable:
        runs.resolve_system(cfg)  # fail fast on an unknown id or a bad PDB
    run = runs.train(cfg, out, progress=progress)
    if is_main():
        typer.echo(f"trained a {cfg.model} model of {name} for {cfg.train.steps} steps → {run.path}")
        what = "--system ID " if run.system is None else ""
        typer.echo(f"next: boltzflow sample --run {run.path} {what}-n {cfg.sample.n_samples}")


def register(app: typer.Typer) -> None:
    """Add the command to ``app``."""
    app.command("train")(train_cmd)
