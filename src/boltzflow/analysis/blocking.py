"""Standard errors of means of correlated time series (MD frames) by block averaging.

Neighbouring MD frames are correlated, so a bootstrap over frames (which treats them as
independent) under-reports the error of any average over them by ``√(2τ)`` for an
integrated autocorrelation time of ``τ`` frames. Averaging in blocks longer than ``τ`` makes
the block means nearly independent (Flyvbjerg & Petersen, J. Chem. Phys. 91, 461 (1989)); the
block length is chosen by the criterion of Lee et al., Phys. Rev. E 83, 066706 (2011), as in
pyblock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["BLOCK", "BlockError", "block_standard_error"]

#: The name of the method, as recorded beside each error it gives (``*_stderr_method``).
BLOCK = "block"

#: Fewest blocks a standard error is computed from.
MIN_BLOCKS = 8


@dataclass(frozen=True)
class BlockError:
    """The standard error of a time series' mean from block averaging.

    Attributes:
        stderr: standard error of the mean (units of the series).
        block_size: frames per block at the chosen blocking level.
        n_blocks: blocks at that level.
        naive: the standard error that treats the frames as independent.
        converged: whether the criterion found a block length; if not, ``stderr`` is that of
            the largest over block sizes (each with at least :data:`MIN_BLOCKS` blocks), likely
            too small: the run is shorter than a few correlation times.
    """

    stderr: float
    block_size: int
    n_blocks: int
    naive: float
    converged: bool

    @property
    def correlation_time(self) -> float:
        """Integrated autocorrelation time in frames, ``(stderr / naive)² / 2``."""
        return (self.stderr / self.naive) ** 2 / 2 if self.naive > 0 else math.nan


def _level_errors(x: Tensor) -> list[tuple[int, int, float]]:
    """``(block_size, n_blocks, stderr)`` for block sizes 1, 2, 4, … (at least MIN_BLOCKS)."""
    levels = []
    size = 1
    while len(x) // size >= MIN_BLOCKS:
        n = len(x) // size
        means = x[: n * size].reshape(n, size).mean(1)
        levels.append((size, n, float(means.std() / math.sqrt(n))))
        size *= 2
    return levels


def block_standard_error(series: Tensor) -> BlockError:
    """The standard error of the mean of a time-ordered series ``[T]`` by block averaging.

    Block sizes double from 1; the chosen one is the smallest ``B`` with
    ``B³ > 2 T (σ_B / σ_1)⁴`` (Lee et al. 2011), where ``σ_B`` is the standard error from
    blocks of ``B`` frames: blocks long enough against the correlation time, and no longer.

    Args:
        series: a scalar per frame ``[T]``, in time order.

    Example:
        >>> gen = torch.Generator().manual_seed(0)
        >>> round(block_standard_error(torch.randn(10_000, generator=gen)).stderr, 2)
        0.01
    """
    x = series.detach().to("cpu", torch.float64).flatten()
    if len(x) < 2 * MIN_BLOCKS:
        raise ValueError(f"block averaging needs at least {2 * MIN_BLOCKS} frames, got {len(x)}")
    levels = _level_errors(x)
    naive = levels[0][2]
    for size, n, err in levels:
        if naive > 0 and size**3 > 2 * len(x) * (err / naive) ** 4:
            return BlockError(err, size, n, naive, True)
        if naive == 0:
            return BlockError(0.0, size, n, naive, True)
    size, n, err = max(levels, key=lambda level: level[2])
    return BlockError(err, size, n, naive, False)
