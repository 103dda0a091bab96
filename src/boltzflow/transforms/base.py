"""The ``Bijection`` contract and its composition.

``forward(z) -> (x, logdet)`` maps latent to data, ``inverse(x) -> (z, logdet)`` maps back;
``logdet: [B]`` is ``log|det J|`` of the call that produced it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable

from torch import Tensor, nn


class Bijection(nn.Module, ABC):
    """An invertible map with a tractable log-determinant, batch-first."""

    @abstractmethod
    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Latent ``z`` -> data ``x``; returns ``(x, logdet[B])``."""

    @abstractmethod
    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Data ``x`` -> latent ``z``; returns ``(z, logdet[B])``."""


class Chain(Bijection):
    """Composition ``b_n ∘ … ∘ b_1``: ``forward`` applies ``bijections`` in order."""

    def __init__(self, bijections: Iterable[Bijection]):
        super().__init__()
        self.bijections = nn.ModuleList(bijections)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        logdet = z.new_zeros(z.shape[0])
        for b in self.bijections:
            z, ld = b.forward(z)
            logdet = logdet + ld
        return z, logdet

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        logdet = x.new_zeros(x.shape[0])
        for b in reversed(self.bijections):
            x, ld = b.inverse(x)
            logdet = logdet + ld
        return x, logdet


class Inverse(Bijection):
    """The inverse of a bijection: swaps ``forward`` and ``inverse``."""

    def __init__(self, bijection: Bijection):
        super().__init__()
        self.bijection = bijection

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self.bijection.inverse(z)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.bijection.forward(x)
