"""Z-matrices built automatically from a molecule's bond graph.

A Z-matrix lists every atom once, in placement order, with up to three reference atoms placed
before it: the **bond partner** ``j`` (distance ``|x_i - x_j|``), the **angle partner** ``k``
(angle ``∠ i-j-k`` at ``j``) and the **torsion partner** ``l`` (dihedral ``i-j-k-l``). The first
three atoms form the global frame and have fewer references. A **ring-closure row** (an atom
bonded to two atoms placed before it) replaces its angle by the ring's closing bond: see
:class:`ZMatrix`. See ``docs/internal_coordinates.md``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    import mdtraj

__all__ = ["ZMatrix", "build_zmatrix", "zmatrix_from_graph"]


@dataclass(frozen=True)
class ZMatrix:
    """Placement order and reference atoms of every atom.

    Attributes:
        rows: ``[n_atoms, 4]`` long, one row per atom in placement order:
            ``(atom, bond partner, angle partner, torsion partner)``, ``-1`` where a frame atom
            has no such reference. Row 0 is the origin atom ``(a0, -1, -1, -1)``, row 1 the
            x-axis atom ``(a1, a0, -1, -1)``, row 2 the plane atom ``(a2, j, k, -1)`` with
            ``{j, k} = {a0, a1}``; rows 3… have all three references, each placed earlier.
        closures: ``bool[n_atoms]``, ``True`` for a **ring-closure row** ``(i, j, m, k)``: atom
            ``i`` bonded to both ``j`` and ``m``, placed by its two bond lengths ``|x_i - x_j|``,
            ``|x_i - x_m|`` (the ring's closing bond, otherwise implicit) and the dihedral
            ``i-j-m-k`` about the ``j-m`` chord. Default: no closures.

    Example:
        >>> zm = build_zmatrix(system.topology)  # doctest: +SKIP
        >>> zm.order[:3]  # the frame atoms  # doctest: +SKIP
    """

    rows: Tensor
    closures: Tensor | None = None

    def __post_init__(self) -> None:
        rows = torch.as_tensor(self.rows, dtype=torch.long)
        object.__setattr__(self, "rows", rows)
        _validate(rows)
        closures = (torch.zeros(len(rows), dtype=torch.bool) if self.closures is None
                    else torch.as_tensor(self.closures, dtype=torch.bool))
        if closures.shape != (len(rows),) or closures[:3].any():
            raise ValueError(
                f"closures must be bool[{len(rows)}] and False on the 3 frame rows, got "
                f"{closures.tolist()}"
            )
        object.__setattr__(self, "closures", closures)

    @property
    def n_atoms(self) -> int:
        return len(self.rows)

    @property
    def order(self) -> Tensor:
        """Atom indices ``[n_atoms]`` in placement order."""
        return self.rows[:, 0]

    @property
    def frame(self) -> Tensor:
        """The three frame atoms ``[3]``: origin, x-axis atom, xy-plane atom."""
        return self.rows[:3, 0]

    @property
    def internal(self) -> Tensor:
        """Rows ``[n_atoms - 3, 4]`` of the atoms placed by (bond, angle, torsion)."""
        return self.rows[3:]


def _validate(rows: Tensor) -> None:
    """Raise ``ValueError`` unless ``rows`` is a valid Z-matrix table."""
    if rows.dim() != 2 or rows.shape[1] != 4 or len(rows) < 3:
        raise ValueError(f"Z-matrix rows must have shape [n_atoms >= 3, 4], got {list(rows.shape)}")
    n = len(rows)
    atoms = rows[:, 0].tolist()
    if sorted(atoms) != list(range(n)):
        raise ValueError(
            f"the Z-matrix must list every atom 0..{n - 1} exactly once; got atoms {atoms}"
        )
    placed: set[int] = set()
    for position, row in enumerate(rows.tolist()):
        atom, refs = row[0], row[1:]
        n_refs = min(position, 3)
        if any(r != -1 for r in refs[n_refs:]):
            raise ValueError(
                f"Z-matrix row {position} (atom {atom}) is a frame row and may have only "
                f"{n_refs} references (the rest -1), got {refs}"
            )
        used = refs[:n_refs]
        if any(r not in placed for r in used) or len(set(used)) != len(used):
            raise ValueError(
                f"Z-matrix row {position} (atom {atom}) must reference distinct atoms placed "
                f"before it, got {used}"
            )
        placed.add(atom)
    if rows[1, 1] != rows[0, 0] or set(rows[2, 1:3].tolist()) != set(rows[:2, 0].tolist()):
        raise ValueError(
            "Z-matrix frame rows must be (a0), (a1 bonded to a0) and (a2 referencing a0 and a1)"
        )


def build_zmatrix(topology: mdtraj.Topology, *, ring_closures: bool = False) -> ZMatrix:
    """A Z-matrix for the molecule of an mdtraj ``Topology`` (uses its bonds and elements).

    See :func:`zmatrix_from_graph` for the construction (and ``ring_closures``).

    Raises:
        TypeError: ``topology`` is not an mdtraj ``Topology``.
        ValueError: fewer than 3 atoms, or a bond graph that is not one connected molecule.
    """
    import mdtraj

    if not isinstance(topology, mdtraj.Topology):
        raise TypeError(
            f"build_zmatrix needs an mdtraj Topology with bonds, got {type(topology).__name__}"
        )
    bonds = [(a.index, b.index) for a, b in topology.bonds]
    hydrogen = [a.element is not None and a.element.symbol == "H" for a in topology.atoms]
    return zmatrix_from_graph(topology.n_atoms, bonds, hydrogen, ring_closures=ring_closures)


def zmatrix_from_graph(
    n_atoms: int,
    bonds: Iterable[tuple[int, int]],
    hydrogen: Sequence[bool],
    *,
    spine: Sequence[int] | None = None,
    priority: Sequence[int] | None = None,
    ring_closures: bool = False,
    frame: int | None = None,
) -> ZMatrix:
    """A deterministic Z-matrix from a bond graph.

    1. **Skeleton**: the heavy atoms (all atoms if there are fewer than three, or if they are not
       connected among themselves).
    2. **Backbone**: a longest chain of the skeleton (double breadth-first search; exact for
       trees, ties broken by the smaller atom index).
    3. **Frame**: the chain's middle atom ``a0`` and its two chain neighbours ``a1``, ``a2``, so
       that the lever arms from the frame to the ends are as short as possible.
    4. **Order**: the rest of the chain, walking outwards from the middle; then the other
       skeleton atoms breadth-first; then the remaining atoms (hydrogens), grouped by the atom
       that carries them. Each atom's bond partner ``j`` is the atom it was reached from.
    5. **References**: the angle partner ``k`` is the bond partner of ``j`` (for ``j = a0``: its
       earliest-placed neighbour). The torsion partner ``l`` is an already placed *sibling*
       (another neighbour of ``j``) if there is one, giving a nearly rigid improper-like dihedral
       (the second and third methyl hydrogens, the carbonyl O, Cβ against N-Cα-C fixing
       chirality); otherwise a neighbour of ``k`` (the bond partner of ``k`` first), giving a
       proper torsion. So each rotatable bond carries one free torsion (φ, ψ, ω, χ, methyl
       rotors) and the others ride on it.

    Args:
        n_atoms: number of atoms (at least 3).
        bonds: pairs of bonded atom indices.
        hydrogen: ``[n_atoms]`` booleans, ``True`` for hydrogen atoms.
        spine: a bonded chain of at least 3 atoms to use as the backbone instead of the longest
            chain (e.g. a peptide's main chain, :func:`~boltzflow.models.tbg_ic.peptide_zmatrix`).
        priority: ``[n_atoms]`` ranks that order the breadth-first search and break ties
            (default: the atom index), so that the same chemistry gets the same references in
            every molecule.
        ring_closures: make each ring's closing bond a coordinate (closure rows).
        frame: the position in the chain of the frame's atom ``a0`` instead of the middle
            (clamped to ``[1, len(chain) - 2]``), e.g. a peptide's first carbonyl C, so that
            every residue is built in the same direction whatever the chain's length.

    Returns:
        The :class:`ZMatrix`.

    Raises:
        ValueError: fewer than 3 atoms, bad bond indices, or a disconnected bond graph.

    Example:
        >>> zm = zmatrix_from_graph(4, [(0, 1), (1, 2), (2, 3)], [False] * 4)  # butane skeleton
        >>> zm.order.tolist()
        [1, 0, 2, 3]
    """
    if n_atoms < 3:
        raise ValueError(f"a Z-matrix needs at least 3 atoms, got {n_atoms}")
    if len(hydrogen) != n_atoms:
        raise ValueError(f"hydrogen must have n_atoms={n_atoms} entries, got {len(hydrogen)}")
    neighbours: list[set[int]] = [set() for _ in range(n_atoms)]
    for a, b in bonds:
        a, b = int(a), int(b)
        if not (0 <= a < n_atoms and 0 <= b < n_atoms) or a == b:
            raise ValueError(f"bond ({a}, {b}) is not a pair of distinct atoms in [0, {n_atoms})")
        neighbours[a].add(b)
        neighbours[b].add(a)
    rank_of = list(range(n_atoms)) if priority is None else [int(p) for p in priority]
    adjacency = [sorted(s, key=lambda a: (rank_of[a], a)) for s in neighbours]
    unreached = set(range(n_atoms)) - set(_distances(adjacency, 0, None))
    if unreached:
        raise ValueError(
            f"the bond graph is not one connected molecule: atoms {sorted(unreached)[:10]} are not "
            "bonded to atom 0; a Z-matrix needs a single molecule with all its bonds"
        )

    heavy = {i for i in range(n_atoms) if not hydrogen[i]}
    if len(heavy) < 3 or len(_distances(adjacency, min(heavy), heavy)) != len(heavy):
        heavy = set(range(n_atoms))
    chain = _longest_chain(adjacency, heavy) if spine is None else _check_spine(spine, neighbours)
    middle = (len(chain) - 1) // 2 if frame is None else min(max(int(frame), 1), len(chain) - 2)
    a0, a1, a2 = chain[middle], chain[middle - 1], chain[middle + 1]

    order = [a0, a1, a2]
    parent = {a1: a0, a2: a0}
    # The chain outwards from the middle, alternating sides.
    left, right = chain[: middle - 1][::-1], chain[middle + 2 :]
    previous = {"left": a1, "right": a2}
    for step in range(max(len(left), len(right))):
        for side, atoms in (("left", left), ("right", right)):
            if step < len(atoms):
                order.append(atoms[step])
                parent[atoms[step]] = previous[side]
                previous[side] = atoms[step]
    # Breadth-first from everything placed: first within the skeleton, then all the rest.
    for allowed in (heavy, None):
        placed = set(order)
        cursor = 0
        while cursor < len(order):
            u = order[cursor]
            cursor += 1
            for v in adjacency[u]:
                if v not in placed and (allowed is None or v in allowed):
                    placed.add(v)
                    parent[v] = u
                    order.append(v)

    rank = {atom: position for position, atom in enumerate(order)}
    rows = [[a0, -1, -1, -1], [a1, a0, -1, -1], [a2, a0, a1, -1]]
    closures = [False, False, False]
    for i in order[3:]:

        def before(atoms: Iterable[int], i: int = i) -> list[int]:
            return [a for a in atoms if rank[a] < rank[i]]

        j = parent[i]
        k = parent[j] if j in parent else min(before(adjacency[j]), key=rank.__getitem__)
        siblings = [a for a in before(adjacency[j]) if a != k]
        across = [a for a in before(adjacency[k]) if a != j]
        if siblings:
            torsion = min(siblings, key=rank.__getitem__)
        elif parent.get(k) in across:
            torsion = parent[k]
        elif across:
            torsion = min(across, key=rank.__getitem__)
        else:  # not reached for a tree grown from the frame; kept for odd graphs
            torsion = min((a for a in before(order) if a not in (j, k)), key=rank.__getitem__)
        closing = [a for a in before(adjacency[i]) if a not in (j, k)] if ring_closures else []
        if closing:  # i closes a ring through m: (i, j, m, k) with the dihedral about j-m
            m = min(closing, key=rank.__getitem__)
            rows.append([i, j, m, k])
        else:
            rows.append([i, j, k, torsion])
        closures.append(bool(closing))
    return ZMatrix(torch.tensor(rows, dtype=torch.long), torch.tensor(closures))


def _check_spine(spine: Sequence[int], neighbours: list[set[int]]) -> list[int]:
    """``spine`` as a list, checked to be a bonded chain of at least 3 distinct atoms."""
    chain = [int(a) for a in spine]
    ok = len(chain) >= 3 and len(set(chain)) == len(chain) and all(
        b in neighbours[a] for a, b in zip(chain, chain[1:]))
    if not ok:
        raise ValueError(f"spine must be a bonded chain of at least 3 distinct atoms, got {chain}")
    return chain


def _distances(adjacency: list[list[int]], start: int, allowed: set[int] | None) -> dict[int, int]:
    """Breadth-first graph distances from ``start``, within ``allowed`` (all atoms if ``None``)."""
    dist = {start: 0}
    queue = [start]
    for u in queue:
        for v in adjacency[u]:
            if v not in dist and (allowed is None or v in allowed):
                dist[v] = dist[u] + 1
                queue.append(v)
    return dist


def _longest_chain(adjacency: list[list[int]], allowed: set[int]) -> list[int]:
    """A longest shortest path (``>= 3`` atoms) in the subgraph ``allowed``, deterministic."""

    def farthest(start: int) -> int:
        dist = _distances(adjacency, start, allowed)
        return min(dist, key=lambda a: (-dist[a], a))

    u = farthest(min(allowed))
    v = farthest(u)
    # Walk back from v to u along decreasing distance, preferring smaller indices.
    dist = _distances(adjacency, u, allowed)
    chain = [v]
    while chain[-1] != u:
        chain.append(min(a for a in adjacency[chain[-1]] if dist.get(a) == dist[chain[-1]] - 1))
    return chain if chain[0] < chain[-1] else chain[::-1]
