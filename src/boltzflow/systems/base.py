"""``System``: a target with its energy, temperature, shape and (where known) exact reference."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..energies.base import Energy


@dataclass(frozen=True)
class System:
    """A named target.

    Attributes:
        id: registry id; pins everything that changes the energy.
        energy: reduced energy ``u`` (kT).
        temperature: temperature in kelvin; ``None`` for toy targets defined directly in kT.
        description: one line for ``boltzflow systems``.
        n_particles: number of particles for particle systems (``None`` otherwise); such systems
            are invariant under translation, rotation and permutation and use a mean-free prior.
        spatial_dim: dimension of space for particle systems.
        bounds: ``(low, high)`` box per coordinate used for plots and quadrature of 2-D targets.
        reference_sampler: ``(n, generator) -> x`` drawing (near-)exact reference samples, or
            ``None``; how each is obtained is documented with its target.
        reference: short citation of the target's definition.
        in_region_b: ``x -> bool[B]`` splitting configurations into two regions for a
            free-energy difference ``ΔF = F_B - F_A`` (A is the complement), or ``None``.
        region_labels: names of regions A and B for reports.
    """

    id: str
    energy: Energy
    temperature: float | None = None
    description: str = ""
    n_particles: int | None = None
    spatial_dim: int | None = None
    bounds: tuple[tuple[float, float], ...] | None = None
    reference_sampler: Callable[[int, torch.Generator], Tensor] | None = field(
        default=None, repr=False
    )
    reference: str = ""
    in_region_b: Callable[[Tensor], Tensor] | None = field(default=None, repr=False)
    region_labels: tuple[str, str] = ("A", "B")

    @property
    def event_shape(self) -> tuple[int, ...]:
        return self.energy.event_shape

    @property
    def dim(self) -> int:
        return self.energy.dim

    @property
    def is_particle_system(self) -> bool:
        return self.n_particles is not None

    def sample_reference(self, n: int, seed: int = 0) -> Tensor:
        """``n`` reference samples ``[n, *event_shape]`` (float32), reproducible from ``seed``."""
        if self.reference_sampler is None:
            raise NotImplementedError(f"system {self.id!r} has no reference sampler")
        gen = torch.Generator().manual_seed(seed)
        return self.reference_sampler(n, gen).to(torch.float32)
