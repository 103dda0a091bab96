"""boltzflow: learn Boltzmann distributions with generative models and reweight them to be exact.

Example:
    >>> import boltzflow as bf
    >>> system = bf.systems.get("double-well")
    >>> u = system.energy.energy(torch.zeros(1, 2))  # doctest: +SKIP
"""

from __future__ import annotations

from . import (
    analysis,
    continuous,
    distributions,
    energies,
    models,
    runs,
    sampling,
    systems,
    testing,
    training,
    transforms,
)
from .conventions import kT
from .distributions import Boltzmann, Distribution, MeanFreeNormal, StandardNormal
from .energies import Energy
from .flow import Flow
from .transforms import Bijection, Chain, Inverse

from .version import __version__  # noqa: E402

__all__ = [
    "Bijection",
    "Boltzmann",
    "Chain",
    "Distribution",
    "Energy",
    "Flow",
    "Inverse",
    "MeanFreeNormal",
    "StandardNormal",
    "analysis",
    "continuous",
    "distributions",
    "energies",
    "kT",
    "models",
    "runs",
    "sampling",
    "systems",
    "testing",
    "training",
    "transforms",
]
