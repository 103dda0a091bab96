"""``MLPField``: a fully connected vector field for low-dimensional targets."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import Tensor, nn

from .field import ParticleContext, VectorField, time_features

__all__ = ["MLPField"]


class MLPField(VectorField):
    """``v = MLP([x, features(t)])`` on the flattened configuration.

    For particle systems (``event_shape = (N, d)``, ``mean_free=True``) the input is centred and
    the output made mean-free, so the field is translation invariant and keeps trajectories on
    the centre-of-mass-free subspace; it is *not* rotation or permutation equivariant.

    Args:
        event_shape: shape of one configuration, e.g. ``(4, 2)`` for dw4 or ``(2,)``.
        hidden: hidden layer sizes.
        n_frequencies: Fourier frequencies of the time embedding.
        mean_free: centre input and output over particles; default: ``len(event_shape) == 2``.

    Example:
        >>> field = MLPField((4, 2), hidden=(64, 64))
        >>> field(torch.rand(8), torch.randn(8, 4, 2)).shape
        torch.Size([8, 4, 2])
    """

    def __init__(
        self,
        event_shape: tuple[int, ...],
        hidden: Sequence[int] = (128, 128),
        *,
        n_frequencies: int = 4,
        mean_free: bool | None = None,
    ):
        super().__init__()
        self.event_shape = tuple(event_shape)
        self.mean_free = len(self.event_shape) == 2 if mean_free is None else mean_free
        self.n_frequencies = n_frequencies
        dim = int(torch.Size(self.event_shape).numel())
        sizes = [dim + 1 + 2 * n_frequencies, *hidden, dim]
        layers: list[nn.Module] = []
        for a, b in pairwise(sizes[:-1]):
            layers += [nn.Linear(a, b), nn.SiLU()]
        self.net = nn.Sequential(*layers, nn.Linear(sizes[-2], sizes[-1]))

    def velocity(self, t: Tensor, x: Tensor, context: ParticleContext | None) -> Tensor:
        if tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(
                f"x must be [B, {', '.join(map(str, self.event_shape))}], got {list(x.shape)}"
            )
        if self.mean_free:
            x = x - x.mean(dim=-2, keepdim=True)
        inp = torch.cat([x.flatten(1), time_features(t, self.n_frequencies)], dim=-1)
        v = self.net(inp).reshape(x.shape)
        return v - v.mean(dim=-2, keepdim=True) if self.mean_free else v
