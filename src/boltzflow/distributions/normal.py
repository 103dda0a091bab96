"""Priors: the standard normal and the centre-of-mass-free normal for particle systems."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..energies.base import check_event_shape
from .base import Distribution


class StandardNormal(Distribution):
    """Standard normal ``N(0, I)`` over ``event_shape``."""

    def log_prob(self, x: Tensor) -> Tensor:
        check_event_shape(x, self.event_shape)
        d = x[0].numel()
        return -0.5 * x.flatten(1).pow(2).sum(-1) - 0.5 * d * math.log(2 * math.pi)

    def sample_and_log_prob(self, n: int) -> tuple[Tensor, Tensor]:
        x = torch.randn(n, *self.event_shape, device=self.device, dtype=self.dtype)
        return x, self.log_prob(x)

    def sample(self, n: int) -> Tensor:
        return self.sample_and_log_prob(n)[0]


class MeanFreeNormal(Distribution):
    """Isotropic normal on the mean-free subspace of ``n_particles`` points in ``spatial_dim``.

    ``x: [B, n_particles, spatial_dim]`` with ``sum_i x_i = 0``. The density is the standard
    normal on that ``(n_particles - 1) * spatial_dim``-dimensional subspace, so it is invariant
    under rotations and permutations of the particles (Köhler et al., 2020).
    """

    def __init__(self, n_particles: int, spatial_dim: int = 3):
        super().__init__((n_particles, spatial_dim))
        self.n_particles = n_particles
        self.spatial_dim = spatial_dim

    @property
    def subspace_dim(self) -> int:
        return (self.n_particles - 1) * self.spatial_dim

    def log_prob(self, x: Tensor) -> Tensor:
        check_event_shape(x, self.event_shape)
        x = x - x.mean(dim=1, keepdim=True)
        return -0.5 * x.pow(2).sum((1, 2)) - 0.5 * self.subspace_dim * math.log(2 * math.pi)

    def sample_and_log_prob(self, n: int) -> tuple[Tensor, Tensor]:
        x = torch.randn(n, *self.event_shape, device=self.device, dtype=self.dtype)
        x = x - x.mean(dim=1, keepdim=True)
        return x, self.log_prob(x)

    def sample(self, n: int) -> Tensor:
        return self.sample_and_log_prob(n)[0]
