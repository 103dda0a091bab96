"""Build a classic Boltzmann generator (a coupling flow) for a system from a config."""

from __future__ import annotations

from torch import Tensor

from .config import TrainConfig
from .distributions import MeanFreeNormal, StandardNormal
from .flow import Flow
from .systems.base import System
from .systems.molecule import MolecularSystem
from .transforms import Chain, Inverse, MeanFreeEmbedding, Normalization, Reshape, coupling_flow


def build_flow(system: System, config: TrainConfig, data: Tensor | None = None) -> Flow:
    """A coupling flow for ``system``: prior → couplings → normalization → data space.

    Molecules (a :class:`~boltzflow.systems.MolecularSystem`) get the internal-coordinate spline
    flow of :func:`~boltzflow.molecular_flow.build_molecular_flow`.
    Particle systems use a mean-free normal prior; the couplings act on the
    ``(n - 1) · d``-dimensional mean-free subspace through an orthonormal embedding, so
    ``log_q`` is a density on that subspace like the prior's. With ``data``, the normalization
    layer is fitted to it (per-coordinate mean and standard deviation), so the couplings start
    from a standardized problem.
    """
    if isinstance(system, MolecularSystem):
        from .molecular_flow import build_molecular_flow

        return build_molecular_flow(system, config, data)
    couplings = coupling_flow(
        _flat_dim(system),
        n_layers=config.n_layers,
        kind=config.model,
        hidden=tuple(config.hidden),
        n_bins=config.n_bins,
        bound=config.bound,
    )
    norm = Normalization(_flat_dim(system))
    if system.is_particle_system:
        n, d = system.n_particles, system.spatial_dim
        embed = MeanFreeEmbedding(n, d)
        if data is not None:
            norm.fit(embed.inverse(data)[0])
        base = MeanFreeNormal(n, d)
        bijection = Chain([Inverse(embed), couplings, norm, embed])
    else:
        reshape = Reshape((system.dim,), system.event_shape)
        if data is not None:
            norm.fit(data.reshape(len(data), -1))
        base = StandardNormal(system.event_shape)
        bijection = Chain([Inverse(reshape), couplings, norm, reshape])
    return Flow(base, bijection, system.event_shape)


def _flat_dim(system: System) -> int:
    if system.is_particle_system:
        return (system.n_particles - 1) * system.spatial_dim
    return system.dim
