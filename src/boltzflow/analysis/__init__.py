"""Analysis: free energies, metrics, plots and reports."""

from __future__ import annotations

from .free_energy import (
    FreeEnergyDifference,
    free_energy_difference,
    free_energy_difference_quadrature,
)
from .metrics import negative_log_likelihood

__all__ = [
    "FreeEnergyDifference",
    "free_energy_difference",
    "free_energy_difference_quadrature",
    "negative_log_likelihood",
]
