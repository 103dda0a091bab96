"""The ``Energy`` contract: reduced energies ``u(x) = U(x) / kT`` of a batch of configurations."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn


def check_event_shape(x: Tensor, event_shape: tuple[int, ...], what: str = "x") -> None:
    """Raise a clear ``ValueError`` unless ``x`` is ``[B, *event_shape]``."""
    if x.dim() != len(event_shape) + 1 or tuple(x.shape[1:]) != tuple(event_shape):
        raise ValueError(
            f"{what} must have shape [batch, {', '.join(map(str, event_shape))}], "
            f"got {list(x.shape)}"
        )


class Energy(nn.Module, ABC):
    """A reduced (dimensionless, in units of kT) energy.

    Subclasses implement :meth:`_energy` on a batch ``x: [B, *event_shape]`` and return ``[B]``.
    Public methods check shapes; :meth:`force` is ``-du/dx`` by autograd unless overridden.

    Args:
        event_shape: shape of one configuration, e.g. ``(2,)`` or ``(n_atoms, 3)``.
    """

    def __init__(self, event_shape: tuple[int, ...]):
        super().__init__()
        self.event_shape = tuple(int(s) for s in event_shape)

    @property
    def dim(self) -> int:
        """Number of degrees of freedom of one configuration."""
        n = 1
        for s in self.event_shape:
            n *= s
        return n

    @abstractmethod
    def _energy(self, x: Tensor) -> Tensor:
        """Reduced energy ``u: [B]`` of ``x: [B, *event_shape]`` (shapes already checked)."""

    def energy(self, x: Tensor) -> Tensor:
        """Reduced energy ``u: [B]`` of ``x: [B, *event_shape]``."""
        check_event_shape(x, self.event_shape)
        return self._energy(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.energy(x)

    def force(self, x: Tensor) -> Tensor:
        """Force ``-du/dx``, same shape as ``x`` (reduced units per unit length)."""
        check_event_shape(x, self.event_shape)
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            u = self._energy(x)
            (grad,) = torch.autograd.grad(u.sum(), x)
        return -grad
