"""Metrics of a model against reference data."""

from __future__ import annotations

import torch
from torch import Tensor

from ..distributions.base import Distribution


@torch.no_grad()
def negative_log_likelihood(model: Distribution, x: Tensor, *, batch_size: int = 10_000) -> float:
    """Mean ``-log q(x)`` (nats) of reference samples ``x: [B, *event_shape]``."""
    if len(x) == 0:
        raise ValueError("negative_log_likelihood needs at least one sample")
    total = 0.0
    for chunk in torch.split(x, batch_size):
        total += float(-model.log_prob(chunk).to(torch.float64).sum())
    return total / len(x)
