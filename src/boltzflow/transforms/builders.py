"""Ready-made flows: a stack of coupling layers whose masks mix every coordinate."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from .base import Chain
from .coupling import AffineCoupling, SplineCoupling

__all__ = ["coupling_flow", "coupling_masks"]


def coupling_masks(dim: int, n_layers: int) -> list[Tensor]:
    """Masks ``[dim]`` (``True`` = conditioning) cycling through four complementary patterns.

    Even/odd interleaving, then its complement, then first/second half, then its complement:
    each consecutive pair transforms every coordinate, and alternating between interleaving
    and halves makes every coordinate condition on every other within a few layers (for
    ``dim = 2`` the patterns reduce to alternating single coordinates).
    """
    index = torch.arange(dim)
    interleaved = index % 2 == 0
    halves = index < (dim + 1) // 2
    patterns = [interleaved, ~interleaved, halves, ~halves]
    return [patterns[layer % 4] for layer in range(n_layers)]


def coupling_flow(
    dim: int,
    *,
    n_layers: int = 8,
    kind: Literal["spline", "affine"] = "spline",
    hidden: Sequence[int] = (64, 64),
    n_bins: int = 8,
    bound: float = 5.0,
    circular: Sequence[int] | None = None,
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
    for mask in coupling_masks(dim, n_layers):
        if kind == "affine":
            layers.append(AffineCoupling(dim, mask, hidden=hidden))
        else:
            layers.append(
                SplineCoupling(
                    dim, mask, hidden=hidden, n_bins=n_bins, bound=bound, circular=circular
                )
            )
    return Chain(layers)
