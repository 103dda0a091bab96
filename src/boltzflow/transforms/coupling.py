"""Coupling layers: affine (RealNVP) and rational-quadratic spline, on flat ``[B, dim]`` inputs."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence

import torch
from torch import Tensor

from . import splines
from .base import Bijection
from .nets import MLP

__all__ = ["AffineCoupling", "SplineCoupling"]


def _as_mask(mask: Tensor | Sequence[bool], dim: int) -> Tensor:
    """Check ``mask`` and return it as a boolean tensor ``[dim]``."""
    mask = torch.as_tensor(mask, dtype=torch.bool)
    if mask.shape != (dim,):
        raise ValueError(
            f"mask must be a boolean vector of length dim={dim}, got shape {list(mask.shape)}"
        )
    if mask.all() or not mask.any():
        raise ValueError(
            "mask must have at least one True (conditioning) and one False (transformed) entry"
        )
    return mask


class _Coupling(Bijection):
    """Shared wiring: split ``[B, dim]`` by ``mask``, condition on one part, transform the other.

    Subclasses say how many parameters each transformed coordinate needs and apply the
    elementwise transform (Dinh et al., 2017, "Density estimation using Real NVP").

    Args:
        dim: number of coordinates.
        mask: ``[dim]`` booleans, ``True`` = conditioning (left unchanged).
        n_params: conditioner outputs in total (all transformed coordinates together).
        hidden: hidden sizes of the conditioner MLP.
        periodic: indices of periodic coordinates, fed to the conditioner as ``(cos, sin)``.
    """

    def __init__(
        self,
        dim: int,
        mask: Tensor | Sequence[bool],
        n_params: int,
        hidden: Sequence[int],
        periodic: Sequence[int] = (),
    ):
        super().__init__()
        mask = _as_mask(mask, dim)
        self.dim = dim
        is_periodic = torch.zeros(dim, dtype=torch.bool)
        is_periodic[list(periodic)] = True
        # Index buffers (not persistent: they follow from the constructor arguments).
        self.register_buffer("mask", mask, persistent=False)
        self.register_buffer("cond_linear", torch.nonzero(mask & ~is_periodic)[:, 0], False)
        self.register_buffer("cond_periodic", torch.nonzero(mask & is_periodic)[:, 0], False)
        n_features = len(self.cond_linear) + 2 * len(self.cond_periodic)
        self.conditioner = MLP(n_features, n_params, hidden)

    def _features(self, x: Tensor) -> Tensor:
        """Conditioner input ``[B, F]``; angles as ``(cos, sin)`` so the net sees a circle."""
        angles = x[:, self.cond_periodic]
        return torch.cat([x[:, self.cond_linear], angles.cos(), angles.sin()], dim=-1)

    def _check(self, x: Tensor) -> None:
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"input must have shape [batch, {self.dim}], got {list(x.shape)}")

    @abstractmethod
    def _transform(self, x: Tensor, params: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        """Map ``x: [B, dim]`` given ``params: [B, n_params]``; unchanged where ``mask``."""

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        self._check(z)
        return self._transform(z, self.conditioner(self._features(z)), inverse=False)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check(x)
        return self._transform(x, self.conditioner(self._features(x)), inverse=True)


class AffineCoupling(_Coupling):
    """RealNVP affine coupling: ``x_b = z_b · exp(s(z_a)) + t(z_a)``, ``x_a = z_a``.

    The log-scale is soft-clamped to ``(-max_log_scale, max_log_scale)`` by a ``tanh`` so one
    layer cannot blow up or collapse a coordinate (Dinh et al., 2017, "Density estimation using
    Real NVP"). A fresh layer is the identity.

    Args:
        dim: number of coordinates; inputs are ``[B, dim]``.
        mask: ``[dim]`` booleans, ``True`` = conditioning (left unchanged).
        hidden: hidden sizes of the conditioner MLP.
        max_log_scale: bound of the per-coordinate log-scale.

    Example:
        >>> layer = AffineCoupling(4, [True, False, True, False])
        >>> x, logdet = layer(torch.randn(8, 4))
    """

    def __init__(
        self,
        dim: int,
        mask: Tensor | Sequence[bool],
        *,
        hidden: Sequence[int] = (64, 64),
        max_log_scale: float = 3.0,
    ):
        if max_log_scale <= 0:
            raise ValueError(f"max_log_scale must be positive, got {max_log_scale}")
        mask_t = _as_mask(mask, dim)
        super().__init__(dim, mask_t, 2 * int((~mask_t).sum()), hidden)
        self.max_log_scale = max_log_scale
        self.register_buffer("transformed", torch.nonzero(~self.mask)[:, 0], False)

    def _transform(self, x: Tensor, params: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        shift, raw = params.chunk(2, dim=-1)
        log_scale = self.max_log_scale * torch.tanh(raw / self.max_log_scale)
        xb = x[:, self.transformed]
        yb = (xb - shift) * torch.exp(-log_scale) if inverse else xb * log_scale.exp() + shift
        logdet = log_scale.sum(-1)
        return x.index_copy(1, self.transformed, yb), -logdet if inverse else logdet


class SplineCoupling(_Coupling):
    """Rational-quadratic spline coupling, with circular splines for periodic coordinates.

    Transformed coordinates listed in ``circular`` use the circular spline on ``[-π, π)``
    (Rezende et al., 2020); the others use the interval spline on ``[-bound, bound]`` with
    identity tails (Durkan et al., 2019, "Neural Spline Flows"). Periodic conditioning
    coordinates enter the conditioner as ``(cos, sin)``. A fresh layer is the identity.

    Args:
        dim: number of coordinates; inputs are ``[B, dim]``.
        mask: ``[dim]`` booleans, ``True`` = conditioning (left unchanged).
        hidden: hidden sizes of the conditioner MLP.
        n_bins: number of spline bins ``K``.
        bound: half-width of the interval spline; identity outside.
        circular: indices of periodic (angle, radians) coordinates, or ``None``.

    Example:
        >>> layer = SplineCoupling(3, [True, False, False], circular=[2])
        >>> x, logdet = layer(torch.randn(8, 3))
    """

    def __init__(
        self,
        dim: int,
        mask: Tensor | Sequence[bool],
        *,
        hidden: Sequence[int] = (64, 64),
        n_bins: int = 8,
        bound: float = 5.0,
        circular: Sequence[int] | None = None,
    ):
        if int(n_bins) != n_bins or n_bins < 1:
            raise ValueError(f"n_bins must be a positive integer, got {n_bins}")
        if bound <= 0:
            raise ValueError(f"bound must be positive, got {bound}")
        circular = _check_indices(circular, dim)
        mask_t = _as_mask(mask, dim)
        is_periodic = torch.zeros(dim, dtype=torch.bool)
        is_periodic[circular] = True
        interval = torch.nonzero(~mask_t & ~is_periodic)[:, 0]
        periodic = torch.nonzero(~mask_t & is_periodic)[:, 0]
        # Interval splines fix the end derivatives (K - 1 free); circular ones tie them (K free).
        n_params = len(interval) * (3 * n_bins - 1) + len(periodic) * 3 * n_bins
        super().__init__(dim, mask_t, n_params, hidden, periodic=circular)
        self.n_bins = n_bins
        self.bound = float(bound)
        self.register_buffer("interval", interval, False)
        self.register_buffer("periodic", periodic, False)

    def _transform(self, x: Tensor, params: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        k, n_interval = self.n_bins, len(self.interval)
        p_int, p_per = params.split([n_interval * (3 * k - 1), len(self.periodic) * 3 * k], -1)
        p_int = p_int.reshape(len(x), n_interval, 3 * k - 1)
        p_per = p_per.reshape(len(x), len(self.periodic), 3 * k)
        y_int, ld_int = splines.kernel("interval")(
            x[:, self.interval], *p_int.split([k, k, k - 1], -1), inverse=inverse, bound=self.bound
        )
        y_per, ld_per = splines.kernel("circle")(
            x[:, self.periodic], *p_per.split([k, k, k], -1), inverse=inverse
        )
        y = x.index_copy(1, self.interval, y_int).index_copy(1, self.periodic, y_per)
        return y, ld_int.sum(-1) + ld_per.sum(-1)


def _check_indices(circular: Sequence[int] | None, dim: int) -> list[int]:
    """Validate ``circular`` coordinate indices (unique, in ``[0, dim)``)."""
    if circular is None:
        return []
    indices = [int(i) for i in circular]
    if any(i < 0 or i >= dim for i in indices) or len(set(indices)) != len(indices):
        raise ValueError(
            f"circular must list distinct coordinate indices in [0, {dim}), got {list(circular)}"
        )
    return indices
