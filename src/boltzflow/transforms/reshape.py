"""Shape-changing bijections: ``Reshape`` and the mean-free embedding of particle systems."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import Bijection

__all__ = ["MeanFreeEmbedding", "Reshape", "helmert_basis"]


def _check(x: Tensor, shape: tuple[int, ...], what: str) -> None:
    if tuple(x.shape[1:]) != shape:
        raise ValueError(
            f"{what} must have shape [batch, {', '.join(map(str, shape))}], got {list(x.shape)}"
        )


class Reshape(Bijection):
    """Reshape ``[B, *in_shape]`` to ``[B, *out_shape]``; ``logdet = 0``.

    Args:
        in_shape: event shape of the latent side.
        out_shape: event shape of the data side (same number of elements).

    Example:
        >>> x, _ = Reshape((6,), (2, 3))(torch.randn(8, 6))
        >>> x.shape
        torch.Size([8, 2, 3])
    """

    def __init__(self, in_shape: tuple[int, ...], out_shape: tuple[int, ...]):
        super().__init__()
        self.in_shape = tuple(int(s) for s in in_shape)
        self.out_shape = tuple(int(s) for s in out_shape)
        if math.prod(self.in_shape) != math.prod(self.out_shape):
            raise ValueError(
                f"in_shape {self.in_shape} and out_shape {self.out_shape} must have the same "
                "number of elements"
            )

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        _check(z, self.in_shape, "z")
        return z.reshape(len(z), *self.out_shape), z.new_zeros(len(z))

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        _check(x, self.out_shape, "x")
        return x.reshape(len(x), *self.in_shape), x.new_zeros(len(x))


def helmert_basis(n: int) -> Tensor:
    """Orthonormal basis ``[n, n - 1]`` of the vectors of ``R^n`` that sum to zero.

    Column ``k`` is the ``k``-th Helmert contrast ``(1, …, 1, -k, 0, …) / sqrt(k (k + 1))``.
    """
    if n < 2:
        raise ValueError(f"a mean-free basis needs n >= 2, got {n}")
    basis = torch.zeros(n, n - 1, dtype=torch.float64)
    for k in range(1, n):
        basis[:k, k - 1] = 1.0
        basis[k, k - 1] = -float(k)
        basis[:, k - 1] /= math.sqrt(k * (k + 1))
    return basis


class MeanFreeEmbedding(Bijection):
    """Isometry between ``R^((n-1)·d)`` and the mean-free configurations ``[n, d]``.

    ``forward`` writes ``z: [B, (n-1)·d]`` in the orthonormal Helmert basis of the mean-free
    subspace, giving ``x: [B, n, d]`` with ``sum_i x_i = 0``; ``inverse`` removes the mean of
    ``x`` and reads off the coordinates. Both are isometries, so ``logdet = 0`` (the volume
    factor ``½ log det(JᵀJ)`` of an orthonormal embedding), and a standard normal on ``z`` maps
    to :class:`~boltzflow.distributions.MeanFreeNormal` (Köhler et al., 2020).

    Args:
        n_particles: number of particles ``n``.
        spatial_dim: dimension ``d`` of space.

    Example:
        >>> x, _ = MeanFreeEmbedding(4, 2)(torch.randn(8, 6))
        >>> x.sum(1).abs().max() < 1e-6
        tensor(True)
    """

    def __init__(self, n_particles: int, spatial_dim: int = 3):
        super().__init__()
        if spatial_dim < 1:
            raise ValueError(f"spatial_dim must be >= 1, got {spatial_dim}")
        self.n_particles = n_particles
        self.spatial_dim = spatial_dim
        self.register_buffer(
            "basis", helmert_basis(n_particles).to(torch.get_default_dtype()), persistent=False
        )

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        n, d = self.n_particles, self.spatial_dim
        _check(z, ((n - 1) * d,), "z")
        x = torch.einsum("ik,bkd->bid", self.basis.to(z), z.reshape(len(z), n - 1, d))
        return x, z.new_zeros(len(z))

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        _check(x, (self.n_particles, self.spatial_dim), "x")
        x = x - x.mean(dim=1, keepdim=True)
        z = torch.einsum("ik,bid->bkd", self.basis.to(x), x)
        return z.reshape(len(x), -1), x.new_zeros(len(x))
