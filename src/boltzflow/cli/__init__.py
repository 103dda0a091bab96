"""The ``boltzflow`` command line: one thin module per command, each parsing its options and
calling one library function.

A user mistake exits with status 2 and one line on stderr; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import sys

import typer

from ..errors import BoltzflowError
from . import dataset, demo, evaluate, info, sample, simulate, systems, train
from .common import DEBUG_HELP

__all__ = ["app", "main"]

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Boltzmann generators: train flows on Boltzmann densities, sample, reweight, report.",
)


@app.callback()
def root(debug: bool = typer.Option(False, "--debug", help=DEBUG_HELP)) -> None:
    """Boltzmann generators: train flows on Boltzmann densities, sample, reweight, report."""


for module in (systems, train, sample, evaluate, simulate, info, demo):
    module.register(app)
app.add_typer(dataset.app, name="dataset")


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
