"""Centering and Kabsch alignment recover known rigid motions."""

from __future__ import annotations

import torch

from boltzflow.geometry import align, center, kabsch_rotation


def random_rotations(n: int) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(n, 3, 3, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
    q[torch.linalg.det(q) < 0, :, 0] *= -1
    return q


def test_align_undoes_rotation_and_translation():
    ref = torch.randn(10, 3, dtype=torch.float64)
    rot = random_rotations(5)
    x = center(ref) @ rot + torch.randn(5, 1, 3, dtype=torch.float64)
    assert torch.allclose(align(x, ref), center(ref).expand(5, -1, -1), atol=1e-10)


def test_kabsch_never_reflects():
    ref = center(torch.randn(8, 3, dtype=torch.float64))
    mirrored = ref * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    r = kabsch_rotation(mirrored.unsqueeze(0), ref)
    assert torch.allclose(torch.linalg.det(r), torch.ones(1, dtype=torch.float64))
