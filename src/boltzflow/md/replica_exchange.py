"""Parallel tempering maths: temperature ladders, neighbour pairs, the Metropolis exchange test."""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise

from ..conventions import kT
from ..errors import BoltzflowError


def geometric_temperatures(t_min: float, t_max: float, n: int) -> list[float]:
    """``n`` temperatures from ``t_min`` to ``t_max`` (kelvin) with a constant ratio.

    Example:
        >>> geometric_temperatures(300.0, 600.0, 3)
        [300.0, 424.26406871192853, 600.0]
    """
    if n < 2 or not 0 < t_min < t_max:
        raise BoltzflowError(
            f"a temperature ladder needs n >= 2 and 0 < t_min < t_max, got n={n}, "
            f"t_min={t_min}, t_max={t_max}"
        )
    ratio = (t_max / t_min) ** (1.0 / (n - 1))
    return [t_min * ratio**i for i in range(n - 1)] + [float(t_max)]


def check_ladder(temperatures: Sequence[float], target: float) -> list[float]:
    """``temperatures`` as floats if they form a valid ladder whose lowest rung is ``target``.

    Raises:
        BoltzflowError: fewer than two, not strictly increasing, or not starting at ``target``.
    """
    temps = [float(t) for t in temperatures]
    if len(temps) < 2:
        raise BoltzflowError(f"replicas needs at least two temperatures, got {temps}")
    if any(b <= a for a, b in pairwise(temps)):
        raise BoltzflowError(f"replicas must be strictly increasing temperatures, got {temps}")
    if not math.isclose(temps[0], target, rel_tol=1e-9):
        raise BoltzflowError(
            f"replicas must start with the system temperature {target:g} K as the lowest, "
            f"got {temps}; frames are saved at the system temperature"
        )
    return temps


def neighbour_pairs(n_temperatures: int, attempt: int) -> list[int]:
    """Lower indices ``i`` of the pairs ``(i, i + 1)`` tried at exchange ``attempt``.

    Even attempts try ``(0,1), (2,3), …``, odd attempts ``(1,2), (3,4), …`` so that every pair is
    tried every other attempt and no temperature is in two pairs at once.
    """
    return list(range(attempt % 2, n_temperatures - 1, 2))


def log_acceptance(t_low: float, t_high: float, energy_low: float, energy_high: float) -> float:
    """Log Metropolis ratio of swapping the configurations at ``t_low`` and ``t_high``.

    Args:
        t_low, t_high: the two temperatures (kelvin).
        energy_low, energy_high: potential energies (kJ/mol) of the configurations currently at
            ``t_low`` and ``t_high``.

    Returns:
        ``(1/kT_low - 1/kT_high) (U_low - U_high)``; accept with probability ``min(1, exp(.))``.
    """
    return (1.0 / kT(t_low) - 1.0 / kT(t_high)) * (energy_low - energy_high)
