"""Continuous normalizing flows: vector fields (EGNN, MLP), ODE integration, divergences, CNF.

Example:
    >>> from boltzflow.continuous import EGNN, RK4, Exact, ContinuousFlow, integrate
    >>> field = EGNN(2, hidden=32, n_layers=3)
    >>> sol = integrate(field, z, solver=RK4(10), divergence=Exact())  # doctest: +SKIP
"""

from __future__ import annotations

from .builders import build_cnf, data_scale, egnn_for_system, particle_context
from .cnf import ContinuousFlow
from .divergence import Divergence, Exact, Hutchinson, subspace_basis
from .egnn import EGNN
from .field import ParticleContext, VectorField, atom_types_from_topology, time_features
from .integrate import ODESolution, integrate, path_length
from .mlp import MLPField
from .scale import ParticleScale
from .solvers import RK4, Dopri5, Euler, FixedStep, Midpoint, Solver

__all__ = [
    "EGNN",
    "RK4",
    "ContinuousFlow",
    "Divergence",
    "Dopri5",
    "Euler",
    "Exact",
    "FixedStep",
    "Hutchinson",
    "MLPField",
    "Midpoint",
    "ODESolution",
    "ParticleContext",
    "ParticleScale",
    "Solver",
    "VectorField",
    "atom_types_from_topology",
    "build_cnf",
    "data_scale",
    "egnn_for_system",
    "integrate",
    "particle_context",
    "path_length",
    "subspace_basis",
    "time_features",
]
