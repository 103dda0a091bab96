"""``boltzflow info DATASET``: a dataset's provenance."""

from __future__ import annotations

from pathlib import Path

import typer


def info_cmd(dataset: Path = typer.Argument(
        ..., help="Dataset directory, or a pretrained model's name (tbg-ic).")) -> None:
    """Show a dataset's provenance (system, force field, temperature, integrator, frames), or
    a pretrained model's (training set, command, held-out numbers)."""
    from .. import pretrained
    from ..data import info

    if str(dataset) in pretrained.MODELS and not dataset.exists():
        typer.echo(pretrained.describe(str(dataset)))
        return
    typer.echo(info(dataset))


def register(app: typer.Typer) -> None:
    """Add the command to ``app``."""
    app.command("info")(info_cmd)
