"""The target ``Boltzmann(energy)``: ``log_prob = -u``, unnormalized, no sampler."""

from __future__ import annotations

from torch import Tensor

from ..energies.base import Energy
from .base import Distribution


class Boltzmann(Distribution):
    """Unnormalized Boltzmann density ``p(x) ∝ exp(-u(x))`` of a reduced energy ``u``."""

    def __init__(self, energy: Energy):
        super().__init__(energy.event_shape)
        self.energy = energy

    def log_prob(self, x: Tensor) -> Tensor:
        return -self.energy.energy(x)

    def sample(self, n: int) -> Tensor:
        raise NotImplementedError(
            "a Boltzmann target has no direct sampler: train a flow, run MD or MCMC instead"
        )

    def sample_and_log_prob(self, n: int) -> tuple[Tensor, Tensor]:
        return self.sample(n), None  # pragma: no cover - sample raises
