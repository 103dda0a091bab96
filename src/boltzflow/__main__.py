"""``python -m boltzflow`` runs the CLI (also under ``torchrun``)."""

from .cli import main

main()
