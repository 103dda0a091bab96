"""``Flow(base, bijection)``: a normalizing flow, itself a :class:`Distribution`."""

from __future__ import annotations

from torch import Tensor

from .distributions.base import Distribution
from .transforms.base import Bijection


class Flow(Distribution):
    """Push-forward of ``base`` through ``bijection`` (``forward``: latent -> data).

    ``log_q(x) = log_p_base(z) - logdet_forward(z)`` with ``x = forward(z)``.

    Args:
        base: latent distribution.
        bijection: maps latent samples to data; ``event_shape`` is taken from a dry run.
        event_shape: shape of one data sample.
    """

    def __init__(self, base: Distribution, bijection: Bijection, event_shape: tuple[int, ...]):
        super().__init__(event_shape)
        self.base = base
        self.bijection = bijection

    def sample_and_log_prob(self, n: int) -> tuple[Tensor, Tensor]:
        """``x: [n, *event_shape]`` and ``log_q: [n]`` in one pass."""
        z, log_pz = self.base.sample_and_log_prob(n)
        x, logdet = self.bijection.forward(z)
        return x, log_pz - logdet

    def sample(self, n: int) -> Tensor:
        return self.sample_and_log_prob(n)[0]

    def log_prob(self, x: Tensor) -> Tensor:
        """``log_q: [B]`` of data ``x: [B, *event_shape]``."""
        z, logdet = self.bijection.inverse(x)
        return self.base.log_prob(z) + logdet
