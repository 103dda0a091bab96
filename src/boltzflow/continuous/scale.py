"""``ParticleScale``: a uniform scaling of particle configurations with the subspace log-det."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..transforms.base import Bijection

__all__ = ["ParticleScale"]


class ParticleScale(Bijection):
    """``x = scale · z`` for ``z: [B, N, d]``, with ``logdet = (N - 1)·d·log(scale)``.

    The log-determinant is the volume change on the mean-free subspace (where
    :class:`~boltzflow.distributions.MeanFreeNormal` lives), not on all ``N·d`` coordinates.
    Put it after a :class:`ContinuousFlow` so the field works in units where the data have
    roughly unit spread (e.g. nm → ``scale`` ≈ 0.1–0.3 for a peptide), and train the field on
    ``x / scale``.

    Args:
        scale: length unit of the latent space in data units (> 0).
        n_particles: ``N``.
        spatial_dim: ``d``.
    """

    def __init__(self, scale: float, n_particles: int, spatial_dim: int = 3):
        super().__init__()
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale}")
        self.register_buffer("scale", torch.tensor(float(scale)))
        self.subspace_dim = (n_particles - 1) * spatial_dim

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        logdet = self.subspace_dim * math.log(float(self.scale))
        return z * self.scale.to(z.dtype), z.new_full((z.shape[0],), logdet)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        logdet = -self.subspace_dim * math.log(float(self.scale))
        return x / self.scale.to(x.dtype), x.new_full((x.shape[0],), logdet)
