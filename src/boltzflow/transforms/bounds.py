"""``TailBound``: the identity in the bulk, a smooth saturation in the tails, on chosen
coordinates, so a flow's samples cannot leave a physical range (bond lengths and angles)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import Bijection

__all__ = ["TailBound"]


def _log_sech2(s: Tensor) -> Tensor:
    """``log(1 - tanh² s)`` for ``s >= 0``, stable for large ``s``."""
    return 2 * (math.log(2) - s - torch.nn.functional.softplus(-2 * s))


class TailBound(Bijection):
    """Elementwise ``ℝ → (-outer, outer)`` on chosen entries, the identity on ``[-inner, inner]``.

    ``forward``: ``y = x`` for ``|x| <= inner``, else
    ``y = sign(x) (inner + w tanh((|x| - inner) / w))`` with ``w = outer - inner``: continuous
    with its first derivative, strictly increasing, so exactly invertible
    (``atanh`` in ``inverse``); logdet ``Σ log(1 - tanh² s)`` over the saturated entries. Other
    coordinates pass unchanged.

    In a flow over normalized internal coordinates (a unit is one thermal standard deviation)
    it sits between the spline couplings (identity outside ``[-bound, bound]``) and the
    normalization: with ``inner = bound`` it leaves the splines' range alone and keeps every
    bond and angle within ``outer`` standard deviations of its mean, where a linear tail would
    let a rare latent draw stretch a bond by any amount. Inverse of a value at or beyond
    ``outer`` (data outside the range) is clamped to ``atanh(1 - 1e-6)``: finite, very unlikely.

    Args:
        dim: length of the flat vector (or the trailing shape, e.g. ``(3,)`` for row tables
            ``[B, R, 3]``).
        indices: entries to bound (of the trailing shape, flattened).
        inner: half-width of the identity region (> 0).
        outer: the bound (> ``inner``).

    Example:
        >>> b = TailBound(3, [0, 2], inner=5.0, outer=10.0)
        >>> b.forward(torch.tensor([[1.0, 100.0, 100.0]]))[0]
        tensor([[  1., 100.,  10.]])
    """

    def __init__(self, dim: int | tuple[int, ...], indices: Tensor | list[int], *, inner: float,
                 outer: float):
        super().__init__()
        if not 0 < inner < outer:
            raise ValueError(f"TailBound needs 0 < inner < outer, got inner={inner}, outer={outer}")
        shape = (dim,) if isinstance(dim, int) else tuple(dim)
        mask = torch.zeros(shape, dtype=torch.bool)
        mask.view(-1)[torch.as_tensor(indices, dtype=torch.long)] = True
        self.register_buffer("mask", mask, persistent=False)
        self.inner, self.outer = float(inner), float(outer)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        width = self.outer - self.inner
        s = ((z.abs() - self.inner) / width).clamp_min(0)
        tail = self.mask & (s > 0)
        y = torch.where(tail, z.sign() * (self.inner + width * torch.tanh(s)), z)
        return y, torch.where(tail, _log_sech2(s), 0.0).flatten(1).sum(-1)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        width = self.outer - self.inner
        t = ((x.abs() - self.inner) / width).clamp(0, 1 - 1e-6)
        tail = self.mask & (t > 0)
        s = torch.atanh(t)
        z = torch.where(tail, x.sign() * (self.inner + width * s), x)
        return z, -torch.where(tail, _log_sech2(s), 0.0).flatten(1).sum(-1)
