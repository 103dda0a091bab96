"""``Normalization``: an elementwise affine layer fitted to the data's mean and spread."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import Bijection

__all__ = ["Normalization"]


class Normalization(Bijection):
    """Elementwise affine map ``x = z · scale + shift`` (forward: latent -> data).

    Put it last in a flow (nearest the data) and :meth:`fit` it to training data, so the layers
    before it see roughly standardized coordinates. The scale is stored as its log so it stays
    positive when trained.

    Args:
        dim: number of coordinates; inputs are ``[B, dim]``.
        trainable: make ``shift`` and ``log_scale`` parameters (else fixed buffers).

    Example:
        >>> norm = Normalization(2).fit(data)  # doctest: +SKIP
        >>> z, logdet = norm.inverse(data)  # doctest: +SKIP
    """

    def __init__(self, dim: int, *, trainable: bool = False):
        super().__init__()
        if int(dim) != dim or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim}")
        self.dim = dim
        self.trainable = trainable
        shift, log_scale = torch.zeros(dim), torch.zeros(dim)
        if trainable:
            self.shift = nn.Parameter(shift)
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("shift", shift)
            self.register_buffer("log_scale", log_scale)

    @property
    def scale(self) -> Tensor:
        """Per-coordinate scale ``[dim]``."""
        return self.log_scale.exp()

    @torch.no_grad()
    def fit(self, x: Tensor, *, min_std: float = 1e-6) -> Normalization:
        """Set ``shift`` to the mean and ``scale`` to the std of ``x: [N, dim]``; returns ``self``.

        ``min_std`` keeps a constant coordinate from giving ``log 0``.
        """
        self._check(x, "x")
        if len(x) < 2:
            raise ValueError(f"fit needs at least 2 samples to estimate a std, got {len(x)}")
        self.shift.copy_(x.mean(0))
        self.log_scale.copy_(x.std(0).clamp_min(min_std).log())
        return self

    def _check(self, x: Tensor, what: str) -> None:
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"{what} must have shape [batch, {self.dim}], got {list(x.shape)}")

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        self._check(z, "z")
        logdet = self.log_scale.sum().expand(len(z))
        return z * self.log_scale.exp() + self.shift, logdet

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check(x, "x")
        logdet = -self.log_scale.sum().expand(len(x))
        return (x - self.shift) * torch.exp(-self.log_scale), logdet
