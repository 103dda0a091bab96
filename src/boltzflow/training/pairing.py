"""Pairing strategies for flow matching: independent, minibatch OT and equivariant OT.

A pairing takes a prior batch ``x0`` and a data batch ``x1`` of equal size and returns them
re-paired, ``(x0', x1)``: ``x0'`` holds the same prior samples (re-ordered and, for equivariant
OT, permuted among identical atoms and rotated — operations that leave the symmetric prior
invariant) so that pairs are close and the conditional paths nearly straight.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..geometry import center, kabsch_rotation

__all__ = [
    "EquivariantOT",
    "GroupSlots",
    "IndependentPairing",
    "MinibatchOT",
    "Pairing",
    "align_molecule",
    "align_pairs",
    "molecule_ot",
    "transport_cost",
]


def transport_cost(x0: Tensor, x1: Tensor) -> Tensor:
    """Squared Euclidean distance of each pair ``[B]``: ``|x0 - x1|²`` over all coordinates."""
    return (x0 - x1).pow(2).flatten(1).sum(-1)


def _assignment(cost: Tensor) -> Tensor:
    """For each row of a square ``cost`` ``[B, B]``, its column in the optimal assignment."""
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(cost.detach().cpu().to(torch.float64).numpy())
    return torch.as_tensor(cols[np.argsort(rows)], device=cost.device)


class Pairing(ABC):
    """Maps ``(x0, x1)`` to ``(x0', x1)`` with ``x0'`` a re-paired prior batch."""

    @abstractmethod
    def __call__(self, x0: Tensor, x1: Tensor) -> tuple[Tensor, Tensor]:
        """Prior batch re-paired to the data batch ``x1`` (returned unchanged)."""


@dataclass(frozen=True)
class IndependentPairing(Pairing):
    """Pairs as drawn: the independent coupling ``q(x0) p(x1)``."""

    def __call__(self, x0: Tensor, x1: Tensor) -> tuple[Tensor, Tensor]:
        return x0, x1


@dataclass(frozen=True)
class MinibatchOT(Pairing):
    """Exact OT within the minibatch (Tong et al., 2024; Pooladian et al., 2023).

    Solves the assignment of ``B`` prior to ``B`` data samples with squared Euclidean cost by the
    Hungarian algorithm (scipy's ``linear_sum_assignment``): uniform marginals of equal size make
    the optimal plan a permutation.
    """

    def __call__(self, x0: Tensor, x1: Tensor) -> tuple[Tensor, Tensor]:
        cost = torch.cdist(x1.flatten(1), x0.flatten(1)).pow(2)  # [B data, B prior]
        return x0[_assignment(cost)], x1


def align_pairs(
    x0: Tensor, x1: Tensor, types: Tensor | None = None, *, rotate: bool = True
) -> Tensor:
    """Permute each ``x0[b]`` among identical atoms onto ``x1[b]``, then rotate it (Kabsch).

    The permutation solves, for each type, the assignment of ``x0``'s atoms to ``x1``'s with
    squared-distance cost (Hungarian); the rotation is the proper one that minimizes
    ``|x0 R - x1|`` for the permuted, centred ``x0`` (Klein, Krämer, Noé, 2023).

    Args:
        x0: centred configurations ``[B, N, d]``.
        x1: centred configurations ``[B, N, d]``.
        types: type per atom ``[N]``; default all identical.
        rotate: apply the Kabsch rotation after the permutation.

    Returns:
        ``x0`` permuted and rotated ``[B, N, d]``.
    """
    from scipy.optimize import linear_sum_assignment

    n = x0.shape[1]
    groups = _type_groups(types, n)
    perms = np.tile(np.arange(n), (len(x0), 1))
    d2 = torch.cdist(x0, x1).pow(2).detach().cpu().numpy()  # [B, N, N]
    for idx in groups:
        sub = d2[:, idx][:, :, idx]
        for b, cost in enumerate(sub):
            rows, cols = linear_sum_assignment(cost)
            # atom idx[cols[k]] of x1 is matched by atom idx[rows[k]] of x0
            perms[b, idx[cols]] = idx[rows]
    perms = torch.as_tensor(perms)
    perms = perms.to(x0.device)
    x0 = torch.gather(x0, 1, perms[..., None].expand_as(x0))
    if rotate:
        x0 = x0 @ kabsch_rotation(x0, x1)
    return x0


def _type_groups(types: Tensor | None, n: int) -> list[np.ndarray]:
    """Index arrays of the types with more than one atom (the only ones worth permuting)."""
    if types is None:
        return [np.arange(n)] if n > 1 else []
    types = types.detach().cpu().numpy()
    groups = [np.flatnonzero(types == k) for k in np.unique(types)]
    return [g for g in groups if len(g) > 1]


@dataclass(frozen=True, eq=False)
class EquivariantOT(Pairing):
    """Equivariant minibatch OT (Klein, Krämer, Noé, NeurIPS 2023; Song et al., 2023).

    For every prior/data pair ``(a, b)``: the optimal permutation of ``x0[a]`` among identical
    atoms (Hungarian), then the optimal rotation (Kabsch); the cost of the pair is the squared
    distance that remains. A minibatch OT over these ``B × B`` costs then picks the pairs, and
    each chosen prior sample is returned in its aligned pose — a sample of the same
    rotation- and permutation-invariant prior, closer to its partner. ``B²`` small assignment
    problems: about ``B² · 4 µs`` for 13 atoms, ``B² · 60 µs`` for 55.

    With ``block_size = k`` the batch is cut into consecutive blocks of ``k`` pairs, each
    assigned on its own: ``B · k`` alignments instead of ``B²`` (the pairs are still aligned,
    only the re-assignment sees fewer candidates).

    Args:
        types: type per atom ``[N]`` (atoms of equal type are exchangeable); default all equal.
        rotate: align rotations too (else permutations only).
        block_size: assign within blocks of this many samples; 0: the whole batch.
    """

    types: Tensor | None = None
    rotate: bool = True
    block_size: int = 0

    def __call__(self, x0: Tensor, x1: Tensor) -> tuple[Tensor, Tensor]:
        if x0.dim() != 3 or x0.shape != x1.shape:
            raise ValueError(f"need x0, x1 of equal shape [B, N, d]; got {list(x0.shape)}")
        if 0 < self.block_size < len(x0):
            parts = [self._pair(a, b) for a, b in zip(x0.split(self.block_size),
                                                      x1.split(self.block_size))]
            return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        return self._pair(x0, x1)

    def _pair(self, x0: Tensor, x1: Tensor) -> tuple[Tensor, Tensor]:
        x0, x1 = center(x0), center(x1)
        batch = len(x0)
        cost = x0.new_empty(batch, batch)
        aligned = []
        for a in range(batch):
            xa = align_pairs(x0[a].expand_as(x1), x1, self.types, rotate=self.rotate)
            cost[:, a] = transport_cost(xa, x1)
            aligned.append(xa)
        choice = _assignment(cost)  # prior index for each data sample
        stacked = torch.stack(aligned)  # [B prior, B data, N, d]
        return stacked[choice, torch.arange(batch, device=x1.device)], x1


# ------------------------------------------------------------------------------------------
# Equivariant OT within one molecule, vectorized for the small permutation groups of peptides.
#
# In a peptide only hydrogens on one heavy atom are exchangeable, so every permutation group has
# 2 or 3 atoms (CH2, NH2; CH3, NH3+). The optimal assignment within such a group is found by
# trying all k! (<= 6) permutations at once in torch: the Hungarian algorithm's answer, but for a
# whole batch of pairs in a few tensor operations instead of one scipy call per group and pair.
# Larger groups fall back to align_pairs.

_MAX_BRUTE_FORCE = 4  # groups up to this size: all k! permutations at once


@dataclass(frozen=True)
class GroupSlots:
    """Atom indices of a molecule's permutation groups with more than one atom, by size.

    Attributes:
        by_size: ``{k: LongTensor[G_k, k]}``, the ``G_k`` groups of ``k`` atoms.
        groups: the permutation group per atom ``[N]`` it was built from.
    """

    by_size: dict[int, Tensor]
    groups: Tensor

    @classmethod
    def from_groups(cls, groups: Tensor) -> GroupSlots:
        groups = groups.detach().cpu()
        rows: dict[int, list[Tensor]] = {}
        for g in torch.unique(groups):
            idx = torch.nonzero(groups == g).flatten()
            if len(idx) > 1:
                rows.setdefault(len(idx), []).append(idx)
        return cls({k: torch.stack(v) for k, v in sorted(rows.items())}, groups)


def _permutations(k: int, device: torch.device | str) -> Tensor:
    return torch.tensor(list(itertools.permutations(range(k))), dtype=torch.long, device=device)


def align_molecule(x0: Tensor, x1: Tensor, slots: GroupSlots, *, rotate: bool = True) -> Tensor:
    """Rotate each ``x0[p]`` onto ``x1[p]``, permute it within its groups, rotate again (Kabsch).

    Most atoms of a peptide are unique, so a first rotation over all atoms already orients the
    molecule; the optimal permutation of each small hydrogen group is then found in that pose,
    and a last rotation fits the permuted configuration (a permutation chosen before any
    rotation would compare hydrogens of two arbitrarily oriented molecules).

    Args:
        x0: centred configurations of one molecule ``[P, N, 3]``.
        x1: centred configurations ``[P, N, 3]`` to align onto, pair by pair.
        slots: the molecule's permutation groups.
        rotate: apply the proper rotations minimizing ``|x0 R - x1|`` (else permute only).

    Returns:
        ``x0`` permuted and rotated, ``[P, N, 3]``: the same prior sample up to symmetries of a
        permutation- and rotation-invariant prior.
    """
    p, n = x0.shape[:2]
    if rotate:
        x0 = x0 @ kabsch_rotation(x0, x1)
    index = torch.arange(n, device=x0.device).expand(p, n).clone()
    for k, idx in slots.by_size.items():
        idx = idx.to(x0.device)  # [G, k]
        if k > _MAX_BRUTE_FORCE:
            types = torch.full((n,), -1, dtype=torch.long)
            for row in idx.cpu():
                types[row] = int(row[0])
            types[types < 0] = torch.arange(n)[types < 0] + n  # singletons elsewhere
            x0 = align_pairs(x0, x1, types, rotate=False)
            continue
        perms = _permutations(k, x0.device)  # [k!, k]
        candidates = idx[:, perms]  # [G, k!, k]: atoms of x0 put in slots 0..k-1
        a = x0[:, candidates]  # [P, G, k!, k, 3]
        b = x1[:, idx][:, :, None]  # [P, G, 1, k, 3]
        cost = (a - b).square().sum((-1, -2))  # [P, G, k!]
        best = cost.argmin(-1)  # [P, G]
        chosen = candidates[torch.arange(len(idx), device=x0.device), best]  # [P, G, k]
        index[:, idx.flatten()] = chosen.flatten(1)
    x0 = torch.gather(x0, 1, index[..., None].expand_as(x0))
    if rotate:
        x0 = x0 @ kabsch_rotation(x0, x1)
    return x0


def molecule_ot(
    x0: Tensor, x1: Tensor, slots: GroupSlots, *, minibatch: bool = True, rotate: bool = True
) -> Tensor:
    """Equivariant OT (Klein, Krämer, Noé 2023) among ``K`` prior and ``K`` data samples of one molecule.

    Every prior/data pair is aligned (:func:`align_molecule`: rotation, permutation within
    groups, rotation); with ``minibatch`` the ``K × K`` remaining squared distances are then assigned
    optimally (Hungarian), and each data sample gets its chosen prior sample in the aligned pose.
    Without ``minibatch`` the pairs stay as drawn and are only aligned.

    Args:
        x0: prior samples ``[K, N, 3]`` (mean-free).
        x1: data samples ``[K, N, 3]``.
        slots: the molecule's permutation groups.

    Returns:
        The re-paired prior batch ``[K, N, 3]`` (row ``i`` belongs to ``x1[i]``).
    """
    if x0.dim() != 3 or x0.shape != x1.shape:
        raise ValueError(f"need x0, x1 of equal shape [K, N, 3]; got {list(x0.shape)}")
    x0, x1 = center(x0), center(x1)
    k = len(x0)
    if not minibatch or k == 1:
        return align_molecule(x0, x1, slots, rotate=rotate)
    prior = x0[:, None].expand(k, k, *x0.shape[1:]).reshape(k * k, *x0.shape[1:])
    data = x1[None].expand(k, k, *x1.shape[1:]).reshape(k * k, *x1.shape[1:])
    aligned = align_molecule(prior, data, slots, rotate=rotate).view(k, k, *x0.shape[1:])
    cost = transport_cost(aligned.flatten(0, 1), data).view(k, k)  # [prior, data]
    choice = _assignment(cost.T)  # prior index for each data sample
    return aligned[choice, torch.arange(k, device=x0.device)]
