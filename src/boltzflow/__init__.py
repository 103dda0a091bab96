"""boltzflow: learn Boltzmann distributions with generative models and reweight them to be exact.

Example:
    >>> import boltzflow as bf
    >>> system = bf.systems.get("double-well")
    >>> u = system.energy.energy(torch.zeros(1, 2))  # doctest: +SKIP
"""

from __future__ import annotations

import os

# Before torch loads OpenMP: threads that wait at a barrier sleep instead of spinning, so a
# busy neighbour on a shared machine costs a little, not 10-20x (docs/benchmarks.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from . import (  # noqa: E402  (after the environment above)
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
from .conventions import kT  # noqa: E402
from .distributions import Boltzmann, Distribution, MeanFreeNormal, StandardNormal  # noqa: E402
from .energies import Energy  # noqa: E402
from .flow import Flow  # noqa: E402
from .transforms import Bijection, Chain, Inverse  # noqa: E402
from .version import __version__  # noqa: E402, F401

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
