"""Distributions: priors and the Boltzmann target."""

from __future__ import annotations

from .base import Distribution
from .boltzmann import Boltzmann
from .mixture import Mixture
from .normal import MeanFreeNormal, StandardNormal

__all__ = ["Boltzmann", "Distribution", "MeanFreeNormal", "Mixture", "StandardNormal"]

from .torus import ProductBase  # noqa: E402

__all__ += ["ProductBase"]
