"""The ``Distribution`` contract: ``log_prob(x) -> [B]`` and ``sample(n) -> x``."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn


class Distribution(nn.Module, ABC):
    """A distribution over ``[*event_shape]`` configurations, batch-first."""

    def __init__(self, event_shape: tuple[int, ...]):
        super().__init__()
        self.event_shape = tuple(int(s) for s in event_shape)
        # A buffer so that ``.to(device, dtype)`` moves samples along with the module.
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    @property
    def device(self) -> torch.device:
        return self._anchor.device

    @property
    def dtype(self) -> torch.dtype:
        return self._anchor.dtype

    @abstractmethod
    def log_prob(self, x: Tensor) -> Tensor:
        """Log density ``[B]`` of ``x: [B, *event_shape]``."""

    def sample(self, n: int) -> Tensor:
        """``n`` independent samples ``[n, *event_shape]``."""
        return self.sample_and_log_prob(n)[0]

    def sample_and_log_prob(self, n: int) -> tuple[Tensor, Tensor]:
        """Samples and their log density in one pass."""
        x = self.sample(n)
        return x, self.log_prob(x)
