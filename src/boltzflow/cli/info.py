"""``boltzflow info DATASET``: a dataset's provenance."""

from __future__ import annotations

from pathlib import Path

import typer


def info_cmd(dataset: Path = typer.Argument(..., help="Dataset directory.")) -> None:
    """Show a dataset's provenance: system, force field, temperature, integrator, frames."""
    from ..data import info

    typer.echo(info(dataset))


def register(app: typer.Typer) -> None:
    """Add the command to ``app``."""
    app.command("info")(info_cmd)
