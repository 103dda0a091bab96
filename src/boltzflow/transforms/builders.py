"""Ready-made flows: a stack of coupling layers whose masks mix every coordinate."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from .base import Chain
from .coupling import AffineCoupling, SplineCoupling

__all__ = ["coupling_flow", "coupling_masks", "position_codes", "torsion_codes"]


def position_codes(dim: int) -> Tensor:
    """The default two-bit codes ``[dim]`` of :func:`coupling_masks`: bit 0 the index's parity
    (even/odd interleaving), bit 1 whether it lies in the second half."""
    index = torch.arange(dim)
    return (index % 2 == 1).long() + 2 * (index >= (dim + 1) // 2).long()


def coupling_masks(dim: int, n_layers: int, codes: Tensor | None = None) -> list[Tensor]:
    """Masks ``[dim]`` (``True`` = conditioning) cycling through four complementary patterns.

    Each coordinate has a two-bit code; the patterns are bit 0, its complement, bit 1, its
    complement: each consecutive pair transforms every coordinate, and two coordinates
    condition on each other in some layer exactly when their codes differ (in four of every
    six layers if bit 0 differs, in two if only bit 1 does). Two coordinates with the same code
    never condition on each other directly.

    Args:
        dim: number of coordinates.
        n_layers: number of masks.
        codes: ``[dim]`` integers in ``0..3``; default: bit 0 the index's parity (even/odd
            interleaving), bit 1 whether it lies in the first half (for ``dim = 2`` the
            patterns reduce to alternating single coordinates).
    """
    codes = position_codes(dim) if codes is None else torch.as_tensor(codes, dtype=torch.long)
    if codes.shape != (dim,) or bool(((codes < 0) | (codes > 3)).any()):
        raise ValueError(f"codes must be {dim} integers in 0..3, got shape {tuple(codes.shape)}")
    bit0, bit1 = codes % 2 == 0, codes // 2 == 0
    patterns = [bit0, ~bit0, bit1, ~bit1]
    return [patterns[layer % 4] for layer in range(n_layers)]


def torsion_codes(axes: Sequence[tuple[int, int]], hops: Tensor,
                  weights: Sequence[float] | None = None) -> list[int]:
    """Two-bit mask codes (:func:`coupling_masks`) for torsions about the bonds ``axes`` that
    give neighbouring torsions different codes.

    Two torsions are neighbours when their axes share an atom or are one bond apart (a residue's
    φ and ψ; ψ, the next ω and φ; χ1 and ψ). They are coloured greedily in the order of their
    axis atoms' indices, each taking the code that differs from its coloured neighbours',
    preferring a different bit 0 (the two then condition on each other in four of every six
    coupling layers, not two), a shared axis atom counting twice as much as one bond between.

    Args:
        axes: each torsion's axis, two atom indices.
        hops: ``[N, N]`` covalent-graph distances between atoms (at least up to 2,
            :func:`~boltzflow.systems.encoding.covalent_hops`).
        weights: how much each torsion's neighbours care to differ from it (default 1; a
            pair counts with the product of its two weights): a stiff torsion such as an
            amide ω needs its neighbours' conditioning less.

    Returns:
        One code in ``0..3`` per torsion, in the order of ``axes``.
    """
    axes = [tuple(sorted((int(b), int(c)))) for b, c in axes]
    weights = [1.0] * len(axes) if weights is None else [float(w) for w in weights]
    codes: dict[int, int] = {}
    for t in sorted(range(len(axes)), key=lambda t: axes[t]):
        apart = {s: min(int(hops[x, y]) for x in axes[t] for y in axes[s]) for s in codes}
        near = [((2 - apart[s]) * weights[s] * weights[t], codes[s]) for s in codes
                if apart[s] <= 1]
        cost = [sum(w * (4 * (code == n) + (code % 2 == n % 2)) for w, n in near)
                for code in range(4)]
        codes[t] = min(range(4), key=lambda code: (cost[code], code))
    return [codes[t] for t in range(len(axes))]


def coupling_flow(
    dim: int,
    *,
    n_layers: int = 8,
    kind: Literal["spline", "affine"] = "spline",
    hidden: Sequence[int] = (64, 64),
    n_bins: int = 8,
    bound: float = 5.0,
    circular: Sequence[int] | None = None,
    codes: Tensor | None = None,
) -> Chain:
    """A stack of ``n_layers`` coupling layers on flat ``[B, dim]``, the identity when fresh.

    Args:
        dim: number of coordinates (at least 2).
        n_layers: number of coupling layers (at least 2, so every coordinate is transformed).
        kind: ``"spline"`` (rational-quadratic, Durkan et al., 2019) or ``"affine"`` (RealNVP,
            Dinh et al., 2017).
        hidden: hidden sizes of each conditioner MLP.
        n_bins: spline bins (``kind="spline"`` only).
        bound: half-width of the interval splines (``kind="spline"`` only).
        circular: indices of periodic coordinates (radians, ``[-π, π)``); spline only.
        codes: two-bit codes ``[dim]`` that choose the masks (:func:`coupling_masks`).

    Returns:
        A :class:`Chain` of coupling layers.

    Example:
        >>> flow = Flow(StandardNormal((2,)), coupling_flow(2), event_shape=(2,))  # doctest: +SKIP
    """
    if isinstance(dim, bool) or int(dim) != dim or dim < 2:
        raise ValueError(f"dim must be an integer >= 2 (a coupling needs two parts), got {dim}")
    if isinstance(n_layers, bool) or int(n_layers) != n_layers or n_layers < 2:
        raise ValueError(
            f"n_layers must be an integer >= 2 so that every coordinate is transformed, "
            f"got {n_layers}"
        )
    if kind not in ("spline", "affine"):
        raise ValueError(f"kind must be 'spline' or 'affine', got {kind!r}")
    if any(isinstance(h, bool) or int(h) != h or h < 1 for h in hidden):
        raise ValueError(f"hidden must be a sequence of positive integers, got {tuple(hidden)}")
    if kind == "affine" and circular:
        raise ValueError(
            "circular coordinates need kind='spline': an affine map does not preserve the circle"
        )
    if kind == "spline":
        if isinstance(n_bins, bool) or int(n_bins) != n_bins or n_bins < 1:
            raise ValueError(f"n_bins must be a positive integer, got {n_bins}")
        if not bound > 0:
            raise ValueError(f"bound must be positive, got {bound}")

    layers = []
    for mask in coupling_masks(dim, n_layers, codes):
        if kind == "affine":
            layers.append(AffineCoupling(dim, mask, hidden=hidden))
        else:
            layers.append(
                SplineCoupling(
                    dim, mask, hidden=hidden, n_bins=n_bins, bound=bound, circular=circular
                )
            )
    return Chain(layers)
