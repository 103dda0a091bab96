"""Divergence estimators as strategy objects: exact trace and Hutchinson's estimator.

A divergence strategy evaluates ``v = fn(x)`` and ``div[B] = tr(∂v/∂x)`` per sample together.

**Mean-free subspace.** Particle configurations ``x: [B, N, d]`` of a translation-invariant
system live on the ``(N - 1)·d``-dimensional subspace ``S`` of centred configurations, where
:class:`~boltzflow.distributions.MeanFreeNormal` puts its density. The change of that density
along the flow is the divergence *restricted to S*, ``tr(P J P)`` with ``P`` the projector on
``S``. For a mean-free field (``Σ_i v_i = 0`` for every ``x``, so ``P J = J``) it equals the full
trace: ``tr(P J P) = tr(J P) = tr(P J) = tr(J)``. Both strategies here take the trace over an
orthonormal basis of ``S`` (``mean_free=True``, the default for ``[B, N, d]`` inputs), which is
the restricted divergence by definition and costs ``(N - 1)·d`` instead of ``N·d`` products.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

__all__ = ["Divergence", "Exact", "Hutchinson", "subspace_basis"]

Fn = Callable[[Tensor], Tensor]


def subspace_basis(event_shape: tuple[int, ...], *, mean_free: bool, dtype=None, device=None):
    """Orthonormal basis ``[M, *event_shape]`` of the space the trace runs over.

    ``mean_free`` and ``event_shape = (N, d)``: the ``M = (N - 1)·d`` vectors ``c_k ⊗ e_a`` with
    ``c_k`` the Helmert contrasts over particles; otherwise the ``M = prod(event_shape)``
    canonical basis vectors.
    """
    from ..transforms.reshape import helmert_basis

    if mean_free and len(event_shape) == 2:
        n, d = event_shape
        contrasts = helmert_basis(n).to(dtype=dtype, device=device).T  # [N - 1, N]
        eye = torch.eye(d, dtype=dtype, device=device)
        return (contrasts[:, None, :, None] * eye[None, :, None, :]).reshape(-1, n, d)
    dim = int(torch.Size(event_shape).numel())
    return torch.eye(dim, dtype=dtype, device=device).reshape(dim, *event_shape)


def _leaf(x: Tensor, create_graph: bool) -> Tensor:
    """``x`` itself when the graph must reach it, else a fresh leaf that requires grad."""
    return x if create_graph and x.requires_grad else x.detach().requires_grad_(True)


class Divergence(ABC):
    """Computes ``(v, div)`` with ``v = fn(x)`` and ``div[B] = tr(∂v/∂x)`` per sample.

    Gradients with respect to the field's parameters flow through ``div`` when grad mode is on
    (likelihood training); evaluate under ``torch.no_grad()`` to skip that graph.
    """

    def init(self, x: Tensor) -> Any:
        """Per-solve state drawn once before integrating from ``x`` (e.g. probe vectors)."""
        return None

    @abstractmethod
    def __call__(self, fn: Fn, x: Tensor, state: Any = None) -> tuple[Tensor, Tensor]:
        """``(v, div)``: ``v`` like ``x``, ``div: [B]``."""


@dataclass(frozen=True)
class Exact(Divergence):
    """Exact trace of the Jacobian, one Jacobian-vector product per basis vector.

    ``mode="reverse"`` (default): one forward pass, then one vector-Jacobian product per basis
    vector on the retained graph, each taking gradients with respect to ``x`` only.
    ``mode="forward"``: forward-mode products ``J u`` vectorized with ``torch.func.vmap`` over
    ``chunk_size`` basis vectors at a time. On CPU the reverse mode is the cheaper of the two
    (``bench/cnf.py`` measures both); forward mode avoids storing a graph.

    Args:
        mode: ``"reverse"`` or ``"forward"``.
        mean_free: for ``x: [B, N, d]``, trace over the mean-free subspace (module docstring).
        chunk_size: basis vectors per vectorized forward-mode batch (``None``: all at once).
    """

    mode: Literal["reverse", "forward"] = "reverse"
    mean_free: bool = True
    chunk_size: int | None = 8

    def __post_init__(self) -> None:
        if self.mode not in ("reverse", "forward"):
            raise ValueError(f"mode must be 'reverse' or 'forward', got {self.mode!r}")

    def __call__(self, fn: Fn, x: Tensor, state: Any = None) -> tuple[Tensor, Tensor]:
        basis = subspace_basis(
            tuple(x.shape[1:]), mean_free=self.mean_free, dtype=x.dtype, device=x.device
        )
        if self.mode == "forward":
            return _trace_forward(fn, x, basis, self.chunk_size)
        return _trace_reverse(fn, x, basis[:, None].expand(-1, *x.shape))


@dataclass(frozen=True)
class Hutchinson(Divergence):
    """Hutchinson's unbiased estimator ``E_ε[εᵀ J ε] = tr(J)`` (Grathwohl et al., FFJORD, 2019).

    The probes ``ε`` (``E[ε εᵀ] = I``, projected on the mean-free subspace for particle
    configurations) are drawn once per solve and reused at every step, so an adaptive solver
    integrates one smooth ODE. Cost: one vector-Jacobian product per probe.

    Args:
        n_probes: probe vectors averaged per sample.
        noise: ``"rademacher"`` (±1, lower variance) or ``"gaussian"``.
        mean_free: for ``x: [B, N, d]``, project the probes on the mean-free subspace.
    """

    n_probes: int = 1
    noise: Literal["rademacher", "gaussian"] = "rademacher"
    mean_free: bool = True

    def __post_init__(self) -> None:
        if self.noise not in ("rademacher", "gaussian"):
            raise ValueError(f"noise must be 'rademacher' or 'gaussian', got {self.noise!r}")
        if self.n_probes < 1:
            raise ValueError(f"n_probes must be >= 1, got {self.n_probes}")

    def init(self, x: Tensor) -> Tensor:
        eps = torch.randn(self.n_probes, *x.shape, dtype=x.dtype, device=x.device)
        if self.noise == "rademacher":
            eps = torch.sign(eps)
        if self.mean_free and x.dim() == 3:
            eps = eps - eps.mean(dim=-2, keepdim=True)
        return eps

    def __call__(self, fn: Fn, x: Tensor, state: Any = None) -> tuple[Tensor, Tensor]:
        eps = self.init(x) if state is None else state
        v, div = _trace_reverse(fn, x, eps)
        return v, div / self.n_probes


def _trace_reverse(fn: Fn, x: Tensor, vectors: Tensor) -> tuple[Tensor, Tensor]:
    """``v = fn(x)`` and ``Σ_m (uₘᵀ J) · uₘ`` over ``vectors: [M, B, ...]`` by reverse mode."""
    create_graph = torch.is_grad_enabled()
    with torch.enable_grad():
        x = _leaf(x, create_graph)
        v = fn(x)
        div = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        last = len(vectors) - 1
        for m, u in enumerate(vectors):
            (g,) = torch.autograd.grad(
                v, x, u, retain_graph=create_graph or m < last, create_graph=create_graph
            )
            div = div + (g * u).flatten(1).sum(-1)
    return (v, div) if create_graph else (v.detach(), div.detach())


def _trace_forward(
    fn: Fn, x: Tensor, basis: Tensor, chunk_size: int | None
) -> tuple[Tensor, Tensor]:
    """``v = fn(x)`` and ``Σ_m uₘ · (J uₘ)`` by forward-mode products vmapped over ``basis``."""
    from torch.func import jvp, vmap

    tangents = basis[:, None].expand(-1, *x.shape)

    def jv(u: Tensor) -> tuple[Tensor, Tensor]:
        v, ju = jvp(fn, (x,), (u,))
        return v, (ju * u).flatten(1).sum(-1)

    batched = vmap(jv, out_dims=(None, 0))
    step = len(tangents) if chunk_size is None else chunk_size
    div = x.new_zeros(x.shape[0])
    for start in range(0, len(tangents), step):
        v, parts = batched(tangents[start : start + step])
        div = div + parts.sum(0)
    return v, div
