"""``boltzflow systems``: the table of named targets."""

from __future__ import annotations

import typer


def systems_cmd() -> None:
    """List the named target systems."""
    from rich.console import Console
    from rich.table import Table

    from .. import systems

    table = Table("id", "description")
    for sid, desc in systems.available().items():
        table.add_row(sid, desc)
    Console().print(table)


def register(app: typer.Typer) -> None:
    """Add the command to ``app``."""
    app.command("systems")(systems_cmd)
