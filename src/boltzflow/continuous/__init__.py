"""Continuous normalizing flows: vector fields (EGNN, MLP), ODE integration, divergences, CNFs.

Example:
    >>> from boltzflow.continuous import EGNN, RK4, Exact, ContinuousFlow, integrate
    >>> field = EGNN(2, hidden=32, n_layers=3)
    >>> sol = integrate(field, z, solver=RK4(10), divergence=Exact())  # doctest: +SKIP
"""

from __future__ import annotations

from .builders import build_cnf, data_scale, egnn_for_system, particle_context, particle_flow
from .cnf import ContinuousFlow
from .divergence import Divergence, Exact, Hutchinson, subspace_basis
from .egnn import EGNN, EGNNLayer
from .field import ParticleContext, VectorField, atom_types_from_topology, time_features
from .integrate import ODESolution, integrate, path_length
from .mlp import MLPField
from .peptide import PeptideEGNN
from .quadrature import QuadratureCNF, gauss_legendre
from .scale import ParticleScale
from .solvers import RK4, Dopri5, Euler, FixedStep, Midpoint, Solver

__all__ = [
    "EGNN",
    "RK4",
    "ContinuousFlow",
    "Divergence",
    "Dopri5",
    "EGNNLayer",
    "Euler",
    "Exact",
    "FixedStep",
    "Hutchinson",
    "MLPField",
    "Midpoint",
    "ODESolution",
    "ParticleContext",
    "ParticleScale",
    "PeptideEGNN",
    "QuadratureCNF",
    "Solver",
    "VectorField",
    "atom_types_from_topology",
    "build_cnf",
    "data_scale",
    "egnn_for_system",
    "gauss_legendre",
    "integrate",
    "particle_context",
    "particle_flow",
    "path_length",
    "subspace_basis",
    "time_features",
]
