"""The ``VectorField`` contract ``(t[B], x, context) -> v`` and the molecule ``ParticleContext``."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["ParticleContext", "VectorField", "atom_types_from_topology", "time_features"]


@dataclass(frozen=True, eq=False)
class ParticleContext:
    """What a field needs to know about the particles besides their positions.

    Attributes:
        atom_types: integer type per particle, ``[N]`` (one molecule) or ``[B, N]`` (a batch of
            molecules padded to ``N``), int64. Particles of equal type are exchangeable: an
            equivariant field commutes with permutations among them and only among them.
        n_types: number of distinct types (the one-hot width); ``atom_types < n_types``.
    """

    atom_types: Tensor
    n_types: int

    def __post_init__(self) -> None:
        if self.atom_types.dtype != torch.long:
            raise ValueError(f"atom_types must be int64, got {self.atom_types.dtype}")
        if self.atom_types.numel() and int(self.atom_types.max()) >= self.n_types:
            raise ValueError(
                f"atom_types has a type {int(self.atom_types.max())} >= n_types={self.n_types}"
            )

    @classmethod
    def identical(cls, n_particles: int) -> ParticleContext:
        """All ``n_particles`` exchangeable (one type): the context of dw4 and the LJ clusters."""
        return cls(torch.zeros(n_particles, dtype=torch.long), 1)

    def to(self, device: torch.device | str) -> ParticleContext:
        return ParticleContext(self.atom_types.to(device), self.n_types)

    def one_hot(self, batch_size: int, dtype: torch.dtype) -> Tensor:
        """One-hot types ``[B, N, n_types]``."""
        oh = nn.functional.one_hot(self.atom_types, self.n_types).to(dtype)
        return oh.expand(batch_size, *oh.shape[-2:])


def atom_types_from_topology(topology, *, scheme: str = "equivalent") -> ParticleContext:
    """Atom types of an mdtraj ``Topology`` for an equivariant field.

    Schemes:
        ``"element"``: one type per chemical element (H, C, N, O, …); every hydrogen is then
            exchangeable with every other, which a force field is not invariant to.
        ``"equivalent"``: every atom its own type, except hydrogens bonded to the same heavy
            atom (the three H of a methyl group), which share one; a force field's energy is
            invariant under exactly these permutations.
        ``"unique"``: every atom its own type (no permutation symmetry).

    Example:
        >>> ctx = atom_types_from_topology(system.topology)  # doctest: +SKIP
    """
    atoms = list(topology.atoms)
    if scheme == "element":
        symbols = sorted({a.element.symbol for a in atoms})
        index = {s: i for i, s in enumerate(symbols)}
        types = [index[a.element.symbol] for a in atoms]
    elif scheme == "unique":
        types = list(range(len(atoms)))
    elif scheme == "equivalent":
        heavy_of = {}
        for a, b in topology.bonds:
            for h, other in ((a, b), (b, a)):
                if h.element.symbol == "H" and other.element.symbol != "H":
                    heavy_of[h.index] = other.index
        keys: dict[tuple, int] = {}
        types = []
        for a in atoms:
            key = ("H", heavy_of[a.index]) if a.index in heavy_of else ("atom", a.index)
            types.append(keys.setdefault(key, len(keys)))
    else:
        raise ValueError(f"scheme must be 'element', 'equivalent' or 'unique', got {scheme!r}")
    return ParticleContext(torch.tensor(types, dtype=torch.long), max(types) + 1)


def time_features(t: Tensor, n_frequencies: int) -> Tensor:
    """``[t, sin(π k t), cos(π k t)]`` for ``k = 1..n_frequencies``: ``[B] -> [B, 1 + 2K]``."""
    k = torch.arange(1, n_frequencies + 1, device=t.device, dtype=t.dtype) * math.pi
    kt = t[:, None] * k
    return torch.cat([t[:, None], torch.sin(kt), torch.cos(kt)], dim=-1)


class VectorField(nn.Module, ABC):
    """A time-dependent velocity ``v = field(t, x, context)`` with ``v.shape == x.shape``.

    ``t: [B]`` (a scalar ``t`` is broadcast), ``x: [B, *event_shape]``. Equivariant particle fields
    take ``x: [B, N, d]``, return a mean-free ``v`` (``Σ_i v_i = 0``), are invariant to
    translations and commute with rotations and with permutations of particles of equal type
    (check with :func:`boltzflow.testing.assert_equivariant`).
    """

    def forward(
        self, t: Tensor | float, x: Tensor, context: ParticleContext | None = None
    ) -> Tensor:
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        if t.shape != (x.shape[0],):
            raise ValueError(f"t must be a scalar or [B]={x.shape[0]}, got {list(t.shape)}")
        return self.velocity(t, x, context)

    @abstractmethod
    def velocity(self, t: Tensor, x: Tensor, context: ParticleContext | None) -> Tensor:
        """``v: [B, *event_shape]`` at ``t: [B]`` (already broadcast), ``x: [B, *event_shape]``."""
