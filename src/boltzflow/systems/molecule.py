"""``MolecularSystem``: a molecule with topology, force field, solvent model and temperature."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from .base import System

FORCEFIELDS = ("amber14", "amber99sb-ildn")
SOLVENTS = ("vacuum", "obc1", "obc2")


@dataclass(frozen=True)
class MolecularSystem(System):
    """A molecule. ``energy`` is the reduced energy in kT (TorchForceField by default).

    Attributes:
        topology: mdtraj ``Topology`` (atoms, elements, residues, bonds).
        openmm_topology: the OpenMM ``app.Topology`` the system was built from.
        openmm_system: the OpenMM ``System`` (no cutoff, no constraints): the ground truth.
        positions: energy-minimized configuration ``[n_atoms, 3]`` in nm (float64).
        forcefield: one of :data:`FORCEFIELDS`.
        solvent: one of :data:`SOLVENTS`.
    """

    topology: Any = field(default=None, repr=False)
    openmm_topology: Any = field(default=None, repr=False)
    openmm_system: Any = field(default=None, repr=False)
    positions: Tensor | None = field(default=None, repr=False)
    forcefield: str = ""
    solvent: str = ""

    @property
    def n_atoms(self) -> int:
        return self.energy.event_shape[0]

    def openmm_energy(self, platform: str = "Reference"):
        """The same reduced energy evaluated by OpenMM (an :class:`~boltzflow.Energy`)."""
        from ..energies.openmm import OpenMMEnergy

        return OpenMMEnergy(self.openmm_system, self.temperature, platform=platform)
