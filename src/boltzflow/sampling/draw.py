"""Draw samples from a flow in chunks and score them against the target energy."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..distributions.base import Distribution
from ..energies.base import Energy
from .samples import Samples


@torch.no_grad()
def draw(
    model: Distribution,
    energy: Energy,
    n: int,
    *,
    batch_size: int = 10_000,
    progress: Callable[[int], object] | None = None,
) -> Samples:
    """``n`` samples of ``model`` with ``log_q`` and the reduced target energy ``u``.

    Args:
        model: anything with ``sample_and_log_prob(n) -> (x, log_q)``.
        energy: target energy (kT).
        n: number of samples.
        batch_size: samples per chunk (bounds memory).
        progress: optional callable ``progress(n_done)`` called after each chunk.
    """
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    xs, log_qs, us = [], [], []
    done = 0
    while done < n:
        m = min(batch_size, n - done)
        x, log_q = model.sample_and_log_prob(m)
        xs.append(x)
        log_qs.append(log_q)
        us.append(energy.energy(x))
        done += m
        if progress is not None:
            progress(done)
    return Samples.from_model(torch.cat(xs), torch.cat(log_qs), torch.cat(us))
