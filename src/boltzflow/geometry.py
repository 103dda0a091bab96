"""Rigid-body geometry on batches of configurations ``x: [B, N, 3]``."""

from __future__ import annotations

import torch
from torch import Tensor


def center(x: Tensor) -> Tensor:
    """Remove the (unweighted) centre of each configuration: ``x - mean_i x_i``."""
    return x - x.mean(dim=-2, keepdim=True)


def kabsch_rotation(x: Tensor, ref: Tensor) -> Tensor:
    """Proper rotations ``R: [B, 3, 3]`` minimizing ``|x R - ref|`` for centred ``x`` and ``ref``.

    Kabsch (1976) with the determinant correction, so reflections are never returned.

    Args:
        x: centred configurations ``[B, N, 3]``.
        ref: centred reference ``[N, 3]`` or ``[B, N, 3]``.
    """
    h = x.transpose(-1, -2) @ ref.expand_as(x)
    u, _, vh = torch.linalg.svd(h)
    d = torch.sign(torch.linalg.det(u @ vh))
    diag = torch.ones_like(h[..., 0])
    diag[..., -1] = d
    return u @ torch.diag_embed(diag) @ vh


def align(x: Tensor, ref: Tensor) -> Tensor:
    """Centre ``x`` and rotate each configuration onto the centred ``ref`` (least squares)."""
    x, ref = center(x), center(ref)
    return x @ kabsch_rotation(x, ref)
