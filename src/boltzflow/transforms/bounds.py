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
        inner: half-width of the identity region (> 0): one value, or one per index.
        outer: the bound (> ``inner``): one value, or one per index.

    Example:
        >>> b = TailBound(3, [0, 2], inner=5.0, outer=10.0)
        >>> b.forward(torch.tensor([[1.0, 100.0, 100.0]]))[0]
        tensor([[  1., 100.,  10.]])
    """

    def __init__(self, dim: int | tuple[int, ...], indices: Tensor | list[int], *,
                 inner: float | Tensor, outer: float | Tensor):
        super().__init__()
        shape = (dim,) if isinstance(dim, int) else tuple(dim)
        index = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        inner_t = torch.as_tensor(inner, dtype=torch.float64).expand(index.shape)
        outer_t = torch.as_tensor(outer, dtype=torch.float64).expand(index.shape)
        if not bool(((0 < inner_t) & (inner_t < outer_t)).all()):
            raise ValueError(f"TailBound needs 0 < inner < outer, got inner={inner}, outer={outer}")
        mask = torch.zeros(shape, dtype=torch.bool)
        mask.view(-1)[index] = True
        # per entry (free entries: 1 and 2, unused), so one bound can differ per coordinate
        lo, hi = torch.ones(shape, dtype=torch.float64), torch.full(shape, 2.0, dtype=torch.float64)
        lo.view(-1)[index], hi.view(-1)[index] = inner_t, outer_t
        self.register_buffer("mask", mask, persistent=False)
        self.register_buffer("lo", lo.float(), persistent=False)
        self.register_buffer("width", (hi - lo).float(), persistent=False)
        self.inner = float(inner_t.min()) if len(index) else float(inner)
        self.outer = float(outer_t.max()) if len(index) else float(outer)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        lo, width = self.lo.to(z.dtype), self.width.to(z.dtype)
        s = ((z.abs() - lo) / width).clamp_min(0)
        tail = self.mask & (s > 0)
        y = torch.where(tail, z.sign() * (lo + width * torch.tanh(s)), z)
        return y, torch.where(tail, _log_sech2(s), 0.0).flatten(1).sum(-1)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        lo, width = self.lo.to(x.dtype), self.width.to(x.dtype)
        t = ((x.abs() - lo) / width).clamp(0, 1 - 1e-6)
        tail = self.mask & (t > 0)
        s = torch.atanh(t)
        z = torch.where(tail, x.sign() * (lo + width * s), x)
        return z, -torch.where(tail, _log_sech2(s), 0.0).flatten(1).sum(-1)
