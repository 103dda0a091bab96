"""Analysis: free energies, metrics, plots and reports."""

from __future__ import annotations

from .dihedrals import backbone_dihedral_indices, dihedral_angles, ramachandran_angles
from .free_energy import (
    FreeEnergyDifference,
    free_energy_difference,
    free_energy_difference_quadrature,
)
from .metrics import negative_log_likelihood
from .molplots import plot_free_energy_profiles, plot_ramachandran, plot_ramachandran_grid
from .pmf import Profile, basin_free_energy_difference, free_energy_profile
from .validity import (
    MirrorFix,
    ValidityReport,
    bond_graph_ok,
    chirality_centers,
    chirality_ok,
    chirality_signs,
    fix_chirality_by_mirroring,
    mask_invalid,
    reference_chirality,
    validity,
)
from .wasserstein import energy_w2, torus_w2

__all__ = [
    "FreeEnergyDifference",
    "free_energy_difference",
    "free_energy_difference_quadrature",
    "negative_log_likelihood",
    "backbone_dihedral_indices",
    "dihedral_angles",
    "ramachandran_angles",
    "MirrorFix",
    "ValidityReport",
    "bond_graph_ok",
    "chirality_centers",
    "chirality_ok",
    "chirality_signs",
    "fix_chirality_by_mirroring",
    "mask_invalid",
    "reference_chirality",
    "validity",
    "energy_w2",
    "torus_w2",
    "Profile",
    "basin_free_energy_difference",
    "free_energy_profile",
    "plot_free_energy_profiles",
    "plot_ramachandran",
    "plot_ramachandran_grid",
]
