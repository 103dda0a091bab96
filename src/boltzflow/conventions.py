"""Units and conventions used everywhere in boltzflow.

* Coordinates are batch-first, ``x: [B, N, 3]`` in nm for molecules, ``[B, *event_shape]`` in
  general; a per-sample scalar is ``[B]``, never ``[B, 1]``.
* Energies are **reduced**: ``u = U / kT`` (dimensionless). The conversion from kJ/mol happens
  once, at the boundary, with :func:`kT`.
* The temperature belongs to the system and is given explicitly (kelvin).
* Flow direction: ``forward`` maps latent ``z`` to data ``x``; ``inverse`` maps ``x`` to ``z``.
  ``logdet`` is ``log|det J|`` of the call that produced it, shape ``[B]``.
* Log densities: ``log_q`` model, ``log_p = -u`` (unnormalized target), ``log_w = log_p - log_q``.
"""

from __future__ import annotations

from typing import TypeVar

#: An energy: a float, a NumPy array or a tensor.
EnergyValue = TypeVar("EnergyValue")

#: Boltzmann constant in kJ/(mol K) (CODATA 2018, times Avogadro's number).
KB_KJ_PER_MOL_K = 0.00831446261815324


def kT(temperature: float) -> float:
    """Thermal energy in kJ/mol at ``temperature`` kelvin."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive (kelvin), got {temperature}")
    return KB_KJ_PER_MOL_K * temperature


def reduce(energy_kj_per_mol: EnergyValue, temperature: float) -> EnergyValue:
    """Convert an energy in kJ/mol into reduced units ``u = U / kT``."""
    return energy_kj_per_mol / kT(temperature)
