"""ODE solvers as strategy objects: adaptive Dormand–Prince and fixed-step Euler, midpoint, RK4.

A solver integrates ``dy/dt = f(t, y)`` for a tuple of tensors ``y`` from ``t0`` to ``t1``
(``t1 < t0`` integrates backwards in time). ``f`` receives ``t`` as a 0-d tensor.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

__all__ = ["RK4", "Dopri5", "Dynamics", "Euler", "FixedStep", "Midpoint", "Solver", "State"]

State = tuple[Tensor, ...]
Dynamics = Callable[[Tensor, State], State]


class Solver(ABC):
    """Integrates a tuple-valued ODE over ``[t0, t1]``."""

    @abstractmethod
    def solve(self, f: Dynamics, y0: State, t0: float, t1: float) -> State:
        """The state at ``t1`` of ``dy/dt = f(t, y)``, ``y(t0) = y0``."""


@dataclass(frozen=True)
class Dopri5(Solver):
    """Adaptive Dormand–Prince 5(4) (``torchdiffeq``), error-controlled by ``rtol``/``atol``.

    The reference solver: the number of function evaluations adapts to the field's stiffness.
    """

    rtol: float = 1e-5
    atol: float = 1e-5

    def solve(self, f: Dynamics, y0: State, t0: float, t1: float) -> State:
        from torchdiffeq import odeint

        t = torch.tensor([t0, t1], dtype=y0[0].dtype, device=y0[0].device)
        ys = odeint(f, y0, t, rtol=self.rtol, atol=self.atol, method="dopri5")
        return tuple(y[-1] for y in ys)


@dataclass(frozen=True)
class FixedStep(Solver, ABC):
    """An explicit Runge–Kutta scheme with ``n_steps`` equal steps (``stages`` evaluations each)."""

    n_steps: int = 20

    stages: ClassVar[int]  # function evaluations per step

    def __post_init__(self) -> None:
        if self.n_steps < 1:
            raise ValueError(f"n_steps must be >= 1, got {self.n_steps}")

    def solve(self, f: Dynamics, y0: State, t0: float, t1: float) -> State:
        h = (t1 - t0) / self.n_steps
        y = y0
        for k in range(self.n_steps):
            t = torch.tensor(t0 + k * h, dtype=y0[0].dtype, device=y0[0].device)
            y = self.step(f, t, y, h)
        return y

    @abstractmethod
    def step(self, f: Dynamics, t: Tensor, y: State, h: float) -> State:
        """One step of size ``h`` from ``(t, y)``."""


def _axpy(y: State, h: float, *ks: tuple[float, State]) -> State:
    """``y + h Σ c k`` over a tuple state."""
    out = list(y)
    for c, k in ks:
        out = [o + (h * c) * ki for o, ki in zip(out, k)]
    return tuple(out)


@dataclass(frozen=True)
class Euler(FixedStep):
    """Forward Euler, first order: one evaluation per step."""

    n_steps: int = 100
    stages: ClassVar[int] = 1

    def step(self, f: Dynamics, t: Tensor, y: State, h: float) -> State:
        return _axpy(y, h, (1.0, f(t, y)))


@dataclass(frozen=True)
class Midpoint(FixedStep):
    """Explicit midpoint, second order: two evaluations per step."""

    n_steps: int = 50
    stages: ClassVar[int] = 2

    def step(self, f: Dynamics, t: Tensor, y: State, h: float) -> State:
        k1 = f(t, y)
        return _axpy(y, h, (1.0, f(t + h / 2, _axpy(y, h / 2, (1.0, k1)))))


@dataclass(frozen=True)
class RK4(FixedStep):
    """Classic fourth-order Runge–Kutta: four evaluations per step."""

    n_steps: int = 20
    stages: ClassVar[int] = 4

    def step(self, f: Dynamics, t: Tensor, y: State, h: float) -> State:
        k1 = f(t, y)
        k2 = f(t + h / 2, _axpy(y, h / 2, (1.0, k1)))
        k3 = f(t + h / 2, _axpy(y, h / 2, (1.0, k2)))
        k4 = f(t + h, _axpy(y, h, (1.0, k3)))
        return _axpy(y, h, (1 / 6, k1), (1 / 3, k2), (1 / 3, k3), (1 / 6, k4))
