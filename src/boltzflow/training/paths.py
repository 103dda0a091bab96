"""Flow matching: a stateless conditional probability path and the regression loss.

The path turns a paired minibatch ``(x0, x1)`` (prior sample, data sample) and times ``t`` into
points ``xt`` and target velocities ``ut``; the field is regressed on ``ut`` (Lipman et al., 2023;
Tong et al., 2024). A training step then reads::

    x0, x1 = pairing(prior.sample(len(x1)), center(x1) / scale)
    t = torch.rand(len(x1))
    loss = flow_matching_loss(field, x0, x1, t, context)
    loss.backward(); optimizer.step()

or, for a loop that calls the field itself (autocast, padded batches of molecules),
``loss = velocity_loss(field(t, xt, context), ut, mask)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

__all__ = ["LinearPath", "flow_matching_loss", "velocity_loss"]


@dataclass(frozen=True)
class LinearPath:
    """Straight (OT) conditional path ``xt = (1 - t) x0 + t x1 + σ ε``, ``ut = x1 - x0``.

    ``σ`` is a small constant width (Tong et al.'s ``σ_min``); with ``mean_free`` the noise ``ε``
    of particle configurations ``[B, N, d]`` is centred so ``xt`` stays mean-free.

    Args:
        sigma: standard deviation of the Gaussian around the straight line.
        mean_free: centre the noise over particles for ``[B, N, d]`` inputs.

    Example:
        >>> xt, ut = LinearPath(0.01)(x0, x1, torch.rand(len(x0)))  # doctest: +SKIP
    """

    sigma: float = 0.0
    mean_free: bool = True

    def __call__(self, x0: Tensor, x1: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(xt, ut)`` like ``x0`` for ``t: [B]`` in ``[0, 1]``."""
        if x0.shape != x1.shape or t.shape != x0.shape[:1]:
            raise ValueError(
                f"need x0, x1 of equal shape and t: [B]; got {list(x0.shape)}, "
                f"{list(x1.shape)}, {list(t.shape)}"
            )
        tb = t.reshape(-1, *([1] * (x0.dim() - 1)))
        xt = (1 - tb) * x0 + tb * x1
        if self.sigma > 0:
            eps = torch.randn_like(x0)
            if self.mean_free and x0.dim() == 3:
                eps = eps - eps.mean(dim=-2, keepdim=True)
            xt = xt + self.sigma * eps
        return xt, x1 - x0


def flow_matching_loss(
    field,
    x0: Tensor,
    x1: Tensor,
    t: Tensor,
    context=None,
    *,
    path: LinearPath | None = None,
) -> Tensor:
    """Mean squared error ``E |v(t, xt) - ut|²`` per configuration (a scalar tensor).

    Args:
        field: a :class:`~boltzflow.continuous.VectorField`.
        x0: prior samples ``[B, ...]`` (after pairing).
        x1: data samples ``[B, ...]`` (after pairing), in the field's units.
        t: times ``[B]``, usually ``U(0, 1)``.
        context: passed to the field.
        path: conditional path; default :class:`LinearPath` with ``σ = 0``.
    """
    xt, ut = (LinearPath() if path is None else path)(x0, x1, t)
    return velocity_loss(field(t, xt, context), ut)


def velocity_loss(
    v: Tensor,
    ut: Tensor,
    mask: Tensor | None = None,
    *,
    reduction: Literal["mean", "sum"] = "mean",
) -> Tensor:
    """The flow-matching regression error ``Σ |v - ut|²`` over real entries (a scalar tensor).

    ``v`` is cast to ``ut``'s dtype first, so a field run under bfloat16 autocast is compared
    in the target's precision.

    Args:
        v: predicted velocities ``[B, N, d]`` or ``[B, D]``.
        ut: target velocities, same shape.
        mask: ``[B, N]`` True on real atoms of a padded batch (only for ``[B, N, d]``); padding
            contributes nothing whatever ``v`` and ``ut`` hold there.
        reduction: ``"mean"``: the squared error summed over each configuration, averaged over
            the ``B`` configurations; ``"sum"``: summed over the batch too, for a loss that
            accumulates several padded passes and divides by its own count of real atoms.

    Example:
        >>> velocity_loss(torch.ones(4, 3, 2), torch.zeros(4, 3, 2))
        tensor(6.)
    """
    if v.shape != ut.shape:
        raise ValueError(f"v and ut must have equal shapes, got {list(v.shape)}, {list(ut.shape)}")
    err = (v.to(ut.dtype) - ut).square()
    if mask is not None:
        if v.dim() != 3 or mask.shape != v.shape[:2]:
            raise ValueError(f"mask must be [B, N] = {list(v.shape[:2])}, got {list(mask.shape)}")
        err = err.sum(-1) * mask
    if reduction == "sum":
        return err.sum()
    if reduction == "mean":
        return err.flatten(1).sum(-1).mean()
    raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
