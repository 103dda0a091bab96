"""Energies in reduced units (kT): toy potentials, particle systems and force fields."""

from __future__ import annotations

from .base import Energy, check_event_shape
from .forcefield import TorchForceField
from .openmm import OpenMMEnergy
from .particles import LennardJones, MultiDoubleWell
from .toy import DoubleWell, GaussianMixture, ManyWell, MuellerBrown

__all__ = [
    "DoubleWell",
    "Energy",
    "GaussianMixture",
    "LennardJones",
    "ManyWell",
    "MuellerBrown",
    "MultiDoubleWell",
    "OpenMMEnergy",
    "TorchForceField",
    "check_event_shape",
]
