"""Equivariant OT within one molecule, vectorized for the small permutation groups of peptides.

In a peptide only hydrogens on one heavy atom are exchangeable, so every permutation group has
2 or 3 atoms (CH2, NH2; CH3, NH3+). The optimal assignment within such a group is found by
trying all ``k!`` (≤ 6) permutations at once in torch — the Hungarian algorithm's answer, but
for a whole batch of pairs in a few tensor operations instead of one ``scipy`` call per group
and pair. Larger groups fall back to :func:`boltzflow.training.pairing.align_pairs`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import Tensor

from ..geometry import center, kabsch_rotation
from ..training.pairing import _assignment, align_pairs, transport_cost

__all__ = ["GroupSlots", "align_molecule", "molecule_ot"]

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


def _permutations(k: int, device) -> Tensor:
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
