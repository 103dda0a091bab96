"""Molecular dynamics with OpenMM into resumable datasets with provenance."""

from __future__ import annotations

from .replica_exchange import geometric_temperatures
from .simulate import SimulationPlan, simulate

__all__ = ["SimulationPlan", "geometric_temperatures", "simulate"]
