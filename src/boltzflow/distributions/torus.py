"""``ProductBase``: standard normal on Euclidean coordinates times uniform on periodic ones."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ..energies.base import check_event_shape
from .base import Distribution

__all__ = ["ProductBase"]


class ProductBase(Distribution):
    """``N(0, 1)`` on the Euclidean coordinates × uniform on the circle for the periodic ones.

    The prior of a flow in internal coordinates: bonds and angles are Euclidean, torsions live
    on the circle ``[-π, π)`` (a torus in all). Periodic coordinates are angles in radians and
    are read modulo ``2π``: their density ``1 / 2π`` does not depend on the value given, so an
    angle that a circular spline hands back as exactly ``π`` (or wrapped) is never out of
    support.

    Args:
        dim: number of coordinates; samples are ``[n, dim]``.
        circular: indices of the periodic coordinates.

    Example:
        >>> base = ProductBase(4, circular=[3])
        >>> z, log_p = base.sample_and_log_prob(8)
        >>> bool((z[:, 3] >= -math.pi).all() and (z[:, 3] < math.pi).all())
        True
    """

    def __init__(self, dim: int, circular: Sequence[int]):
        super().__init__((dim,))
        circular = [int(i) for i in circular]
        if any(i < 0 or i >= dim for i in circular) or len(set(circular)) != len(circular):
            raise ValueError(
                f"circular must list distinct coordinate indices in [0, {dim}), got {circular}"
            )
        is_circular = torch.zeros(dim, dtype=torch.bool)
        is_circular[circular] = True
        self.dim = dim
        self.register_buffer("is_circular", is_circular, persistent=False)
        self.n_circular = len(circular)

    def log_prob(self, x: Tensor) -> Tensor:
        """``[B]``: ``Σ_euclidean log N(x_i; 0, 1) - n_circular · log 2π``."""
        check_event_shape(x, self.event_shape)
        linear = x[:, ~self.is_circular]
        d = linear.shape[1]
        log_norm = 0.5 * d * math.log(2 * math.pi) + self.n_circular * math.log(2 * math.pi)
        return -0.5 * linear.pow(2).sum(-1) - log_norm

    def sample_and_log_prob(self, n: int) -> tuple[Tensor, Tensor]:
        normal = torch.randn(n, self.dim, device=self.device, dtype=self.dtype)
        uniform = (2 * torch.rand(n, self.dim, device=self.device, dtype=self.dtype) - 1) * math.pi
        x = torch.where(self.is_circular, uniform, normal)
        return x, self.log_prob(x)

    def sample(self, n: int) -> Tensor:
        return self.sample_and_log_prob(n)[0]
