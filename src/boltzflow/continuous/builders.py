"""Build an equivariant CNF for a system: its context, its field and the ``Flow`` around them."""

from __future__ import annotations

from torch import Tensor

from ..distributions.normal import MeanFreeNormal
from ..flow import Flow
from ..systems.base import System
from ..transforms.base import Bijection, Chain
from .cnf import ContinuousFlow
from .divergence import Divergence, Exact
from .egnn import EGNN
from .field import ParticleContext, VectorField, atom_types_from_topology
from .scale import ParticleScale
from .solvers import RK4, Solver

__all__ = ["build_cnf", "data_scale", "egnn_for_system", "particle_context", "particle_flow"]


def particle_context(system: System, *, scheme: str = "equivalent") -> ParticleContext:
    """Atom types of a particle system: one type for toys, topology-derived for molecules."""
    from ..systems.molecule import MolecularSystem

    if isinstance(system, MolecularSystem):
        return atom_types_from_topology(system.topology, scheme=scheme)
    if not system.is_particle_system:
        raise ValueError(f"system {system.id!r} is not a particle system; use an MLPField")
    return ParticleContext.identical(system.n_particles)


def egnn_for_system(
    system: System, *, hidden: int = 64, n_layers: int = 4, scheme: str = "equivalent"
) -> tuple[EGNN, ParticleContext]:
    """An :class:`EGNN` field sized for ``system`` and the context to call it with."""
    context = particle_context(system, scheme=scheme)
    n, d = system.event_shape
    field = EGNN(d, n_types=context.n_types, hidden=hidden, n_layers=n_layers)
    return field, context


def data_scale(x: Tensor) -> float:
    """Root-mean-square centred coordinate of ``x: [B, N, d]`` (the spread to divide by)."""
    x = x - x.mean(dim=-2, keepdim=True)
    return float(x.pow(2).mean().sqrt())


def build_cnf(
    system: System,
    field: VectorField,
    context: ParticleContext | None = None,
    *,
    scale: float = 1.0,
    solver: Solver | None = None,
    divergence: Divergence | None = None,
) -> Flow:
    """``Flow(MeanFreeNormal, ContinuousFlow(field) → ×scale)`` over ``system``'s configurations.

    The field sees configurations divided by ``scale`` (train it on ``center(x) / scale``).
    Default solver :class:`RK4` with 20 steps and :class:`Exact` divergence.
    """
    n, d = system.event_shape
    cnf = ContinuousFlow(
        field,
        RK4(20) if solver is None else solver,
        Exact() if divergence is None else divergence,
        context=context,
    )
    return particle_flow(cnf, n, d, scale)


def particle_flow(bijection: Bijection, n: int, d: int, scale: float) -> Flow:
    """``Flow(MeanFreeNormal(n, d), bijection → ×scale)``: a continuous flow over ``n``
    particles in ``d`` dimensions whose field works in units of ``scale`` (the one place a
    particle CNF's ``Flow`` is assembled: the ``cnf`` and ``tbg`` model kinds use it)."""
    return Flow(MeanFreeNormal(n, d), Chain([bijection, ParticleScale(scale, n, d)]), (n, d))
