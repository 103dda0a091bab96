"""``OpenMMEnergy``: reduced energies and forces of an OpenMM ``System``, one configuration at a time.

OpenMM is the reference engine: this bridge evaluates a batch by looping over its configurations
in one OpenMM ``Context`` (created lazily, once per process) and is differentiable through a
custom autograd function whose backward is OpenMM's force. A configuration with NaN/inf
coordinates, or whose energy is not finite or exceeds ``max_energy``, gets the finite energy
``max_energy`` and zero force; such configurations are counted in ``n_flagged``.
"""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from ..conventions import kT
from .base import Energy, check_event_shape

if TYPE_CHECKING:
    import openmm
    from torch.autograd.function import FunctionCtx


class OpenMMEnergy(Energy):
    """Reduced energy ``u = U / kT`` of an OpenMM ``System`` evaluated by OpenMM.

    Args:
        openmm_system: the ``openmm.System``.
        temperature: kelvin; ``u = U / kT(temperature)``.
        platform: OpenMM platform name; ``"Reference"`` is the fastest for tens of atoms
            (the CPU platform has a fixed overhead per call).
        platform_properties: e.g. ``{"Threads": "1"}`` for the CPU platform.
        max_energy: cap in kT: a configuration with non-finite coordinates or energy, or an
            energy above the cap, gets ``u = max_energy`` and zero force, and is counted in
            :attr:`n_flagged` (with one warning per instance).

    Example:
        >>> energy = OpenMMEnergy(system, temperature=300.0)  # doctest: +SKIP
        >>> u = energy.energy(x)        # [B] kT, x: [B, n_atoms, 3] nm, any dtype/device
        >>> f = energy.force(x)         # [B, n_atoms, 3] kT/nm
    """

    def __init__(
        self,
        openmm_system: openmm.System,
        temperature: float,
        platform: str = "Reference",
        *,
        platform_properties: dict[str, str] | None = None,
        max_energy: float = 1e9,
    ):
        super().__init__((openmm_system.getNumParticles(), 3))
        self.system = openmm_system
        self.temperature = float(temperature)
        self.kT = kT(self.temperature)
        self.platform = str(platform)
        self.platform_properties = dict(platform_properties or {})
        self.max_energy = float(max_energy)
        #: Number of configurations flagged so far (non-finite input or energy, or over the cap).
        self.n_flagged = 0
        self._warned = False
        self._context = None
        self._pid: int | None = None

    def __getstate__(self) -> dict:
        # an OpenMM Context can be neither pickled nor shared across processes: rebuild lazily
        return {**self.__dict__, "_context": None, "_pid": None}

    def extra_repr(self) -> str:
        return (
            f"n_atoms={self.event_shape[0]}, temperature={self.temperature}, "
            f"platform={self.platform!r}, max_energy={self.max_energy:g}"
        )

    def _get_context(self):
        if self._context is None or self._pid != os.getpid():
            import openmm

            platform = openmm.Platform.getPlatformByName(self.platform)
            self._context = openmm.Context(
                self.system, openmm.VerletIntegrator(0.001), platform, self.platform_properties
            )
            self._pid = os.getpid()
        return self._context

    def evaluate(self, x: Tensor, forces: bool = True) -> tuple[Tensor, Tensor | None]:
        """Reduced energies ``[B]`` and forces ``[B, n_atoms, 3]`` (kT/nm) in ``x``'s dtype/device.

        ``forces=False`` skips the forces (returns ``None`` for them).
        """
        check_event_shape(x, self.event_shape)
        xs = x.detach().to("cpu", torch.float64).numpy()
        energies, force_arr, flagged = self._evaluate_numpy(xs, forces)
        if flagged:
            self._flag(flagged)
        u = torch.from_numpy(energies).to(device=x.device, dtype=x.dtype)
        f = None if force_arr is None else torch.from_numpy(force_arr).to(x.device, x.dtype)
        return u, f

    def _evaluate_numpy(
        self, xs: np.ndarray, forces: bool
    ) -> tuple[np.ndarray, np.ndarray | None, int]:
        import openmm

        context = self._get_context()
        beta = 1.0 / self.kT
        energies = np.full(len(xs), self.max_energy)
        force_arr = np.zeros_like(xs) if forces else None
        flagged = 0
        for k, pos in enumerate(xs):
            if not np.isfinite(pos).all():
                flagged += 1
                continue
            try:
                context.setPositions(pos)
                state = context.getState(getEnergy=True, getForces=forces)
            except openmm.OpenMMException:
                flagged += 1
                continue
            u = state.getPotentialEnergy()._value * beta  # OpenMM's unit is kJ/mol
            if not np.isfinite(u) or u > self.max_energy:
                flagged += 1
                continue
            if forces:
                f = state.getForces(asNumpy=True)._value * beta  # kJ/mol/nm -> kT/nm
                if not np.isfinite(f).all():
                    flagged += 1
                    continue
                force_arr[k] = f
            energies[k] = u
        return energies, force_arr, flagged

    def _flag(self, count: int) -> None:
        self.n_flagged += count
        if not self._warned:
            self._warned = True
            warnings.warn(
                f"OpenMMEnergy: {count} configuration(s) had non-finite coordinates or an energy "
                f"that is not finite or above max_energy={self.max_energy:g} kT; they get "
                "u = max_energy and zero force (count in .n_flagged). Check the samples (units "
                "are nm) or raise max_energy.",
                RuntimeWarning,
                stacklevel=3,
            )

    def _energy(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return _OpenMMEnergyFunction.apply(x, self)
        return self.evaluate(x, forces=False)[0]

    def energy_kj(self, x: Tensor) -> Tensor:
        """Potential energy ``U: [B]`` in kJ/mol (flagged configurations: ``max_energy · kT``)."""
        return self.evaluate(x, forces=False)[0] * self.kT

    def force(self, x: Tensor) -> Tensor:
        """OpenMM's force ``-du/dx: [B, n_atoms, 3]`` in kT/nm."""
        return self.evaluate(x, forces=True)[1]

    def energy_and_force(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(u [B], -du/dx [B, n_atoms, 3])`` in one pass."""
        return self.evaluate(x, forces=True)


class _OpenMMEnergyFunction(torch.autograd.Function):
    """``x -> u`` evaluated by OpenMM; backward is ``-force`` (first derivatives only)."""

    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, energy: OpenMMEnergy) -> Tensor:
        u, f = energy.evaluate(x, forces=ctx.needs_input_grad[0])
        if f is not None:
            ctx.save_for_backward(f)
        return u

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: FunctionCtx, grad_u: Tensor) -> tuple[Tensor, None]:
        (f,) = ctx.saved_tensors
        return -grad_u[:, None, None] * f, None
