"""Energies in reduced units (kT): toy potentials, particle systems and force fields."""

from __future__ import annotations

from .base import Energy, check_event_shape

__all__ = ["Energy", "check_event_shape"]
