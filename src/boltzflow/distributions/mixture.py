"""``Mixture(components)``: an equal-weight mixture of distributions over the same space.

Used as an importance-sampling proposal, a mixture of independently trained flows has lighter
weight tails than either flow: ``p / q_mix ≤ K · p / q_k`` for every component ``k``, so a
configuration that one flow misses but another covers gets a bounded weight (the balance
heuristic of multiple importance sampling; Veach & Guibas, 1995). The weights stay exact:
``log_q`` is the mixture's density.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .base import Distribution


class Mixture(Distribution):
    """``q(x) = (1/K) Σ_k q_k(x)`` of ``K`` distributions with one ``event_shape``.

    ``sample_and_log_prob(n)`` draws each sample's component uniformly at random, then the
    samples of each component in one batch, and evaluates every component's density at every
    sample (``K`` density passes besides the sampling passes).

    Args:
        components: the distributions (e.g. flows trained with different seeds).

    Example:
        >>> q = Mixture([flow_a, flow_b])  # doctest: +SKIP
        >>> x, log_q = q.sample_and_log_prob(1000)  # doctest: +SKIP
    """

    def __init__(self, components: Sequence[Distribution]):
        components = list(components)
        if not components:
            raise ValueError("a mixture needs at least one component")
        shapes = {tuple(c.event_shape) for c in components}
        if len(shapes) != 1:
            raise ValueError(f"mixture components differ in event_shape: {sorted(shapes)}")
        super().__init__(components[0].event_shape)
        self.components = nn.ModuleList(components)

    def log_prob(self, x: Tensor) -> Tensor:
        """``log (1/K) Σ_k q_k(x)``: ``[B]``."""
        parts = torch.stack([c.log_prob(x) for c in self.components])
        return torch.logsumexp(parts, 0) - math.log(len(self.components))

    def sample_and_log_prob(self, n: int) -> tuple[Tensor, Tensor]:
        """``x: [n, *event_shape]`` from the mixture (components in random order) and its
        ``log_q: [n]``; a component's own density comes from its sampling pass."""
        k = len(self.components)
        which = torch.randint(k, (n,))
        counts = torch.bincount(which, minlength=k).tolist()
        xs, rows = [], []
        for j, (c, m) in enumerate(zip(self.components, counts)):
            if m:
                x, own = c.sample_and_log_prob(m)
                xs.append(x)
                rows.append(torch.stack([own if i == j else other.log_prob(x)
                                         for i, other in enumerate(self.components)]))
        x, parts = torch.cat(xs), torch.cat(rows, 1)  # parts: [K, n]
        log_q = torch.logsumexp(parts, 0) - math.log(k)
        perm = torch.randperm(n, device=x.device)
        return x[perm], log_q[perm]
