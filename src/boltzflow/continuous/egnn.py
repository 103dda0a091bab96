"""``EGNN``: an E(n)- and permutation-equivariant vector field with a factorized edge network."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .field import ParticleContext, VectorField, time_features

__all__ = ["EGNN", "EGNNLayer"]


class _SiLU(torch.autograd.Function):
    """SiLU that caches its derivative when a graph is backpropagated through more than once.

    The exact divergence runs one backward pass per dimension through the same graph; the
    built-in SiLU backward recomputes ``sigmoid`` each time (a third of such a pass). A single
    backward (training) costs what the built-in one does; the cache is kept per grad mode, so a
    ``create_graph`` backward still gets a differentiable derivative.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor) -> Tensor:
        return nn.functional.silu(x)

    @staticmethod
    def setup_context(ctx, inputs: tuple[Tensor], output: Tensor) -> None:
        ctx.save_for_backward(*inputs)
        ctx.save_for_forward(*inputs)
        ctx.cache = {}

    @staticmethod
    def jvp(ctx, tangent: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return torch.ops.aten.silu_backward(tangent, x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        graph = torch.is_grad_enabled()  # create_graph: the derivative must be differentiable
        derivative = ctx.cache.get(graph)
        if derivative is None:
            if graph:
                s = torch.sigmoid(x)
                derivative = ctx.cache[graph] = s * (1 + x * (1 - s))
            elif graph not in ctx.cache:  # first pass: nothing to reuse yet
                ctx.cache[graph] = None
                return torch.ops.aten.silu_backward(grad, x)
            else:
                one = torch.ones((), dtype=x.dtype, device=x.device).expand_as(x)
                derivative = ctx.cache[graph] = torch.ops.aten.silu_backward(one, x)
        return grad * derivative


def silu(x: Tensor) -> Tensor:
    """``x · sigmoid(x)``, with the derivative cached for repeated backward passes.

    Under ``torch.compile`` the built-in SiLU is used: the compiler fuses it with its neighbours.
    """
    return nn.functional.silu(x) if torch.compiler.is_compiling() else _SiLU.apply(x)


class EGNN(VectorField):
    """E(n) equivariant graph network (Satorras et al., 2021) as a flow-matching vector field.

    On the complete graph of ``N`` particles, layer ``l`` updates coordinates and features

    ``m_ij = φ_e(h_i, h_j, |x_i - x_j|²)``,
    ``x_i ← x_i + 1/N Σ_j (x_i - x_j) φ_x(m_ij) / sqrt(|x_i - x_j|² + 1)``,
    ``h_i ← h_i + φ_h(h_i, 1/N Σ_j m_ij)``

    and the velocity is ``v = x_L - x_0`` minus its mean over particles (mean-free). ``h_0``
    embeds the one-hot atom type (from ``context``) and Fourier features of ``t``. The field is
    invariant to translations and commutes with rotations, reflections and permutations of
    particles of equal type, in any ``spatial_dim``.

    Cost: the first linear map of ``φ_e`` acts on a concatenation ``[h_i, h_j, d²]``, so it is
    applied to the ``N`` nodes (``A h_i + B h_j + w d²_ij``) instead of the ``N²`` edges; ``φ_x``
    is one linear map of ``m_ij``; the last layer skips the feature update it does not need.
    Per edge and layer that leaves one ``hidden × hidden`` product instead of three. The SiLU
    caches its derivative, so the exact divergence's repeated backward passes through one graph
    skip the sigmoid. Trains well in bfloat16 mixed precision (``torch.autocast``).

    Args:
        spatial_dim: dimension of space ``d`` (2 for dw4, 3 for molecules).
        n_types: number of atom types (one-hot width); 1 when all particles are identical.
        hidden: feature width.
        n_layers: message-passing layers.
        n_frequencies: Fourier frequencies of the time embedding.

    Example:
        >>> field = EGNN(3, n_types=1, hidden=32, n_layers=3)
        >>> field(torch.rand(8), torch.randn(8, 13, 3)).shape
        torch.Size([8, 13, 3])
    """

    def __init__(
        self,
        spatial_dim: int = 3,
        *,
        n_types: int = 1,
        hidden: int = 64,
        n_layers: int = 4,
        n_frequencies: int = 4,
    ):
        super().__init__()
        if n_layers < 1 or hidden < 1 or n_types < 1:
            raise ValueError("EGNN needs n_layers >= 1, hidden >= 1 and n_types >= 1")
        self.spatial_dim = spatial_dim
        self.n_types = n_types
        self.n_frequencies = n_frequencies
        self.embed = nn.Linear(n_types + 1 + 2 * n_frequencies, hidden)
        self.layers = nn.ModuleList(
            EGNNLayer(hidden, update_features=i < n_layers - 1) for i in range(n_layers)
        )

    def velocity(self, t: Tensor, x: Tensor, context: ParticleContext | None) -> Tensor:
        if x.dim() != 3 or x.shape[-1] != self.spatial_dim:
            raise ValueError(f"x must be [B, N, {self.spatial_dim}], got {list(x.shape)}")
        batch, n = x.shape[:2]
        if context is None:
            context = ParticleContext.identical(n).to(x.device)
        if context.n_types != self.n_types or context.atom_types.shape[-1] != n:
            raise ValueError(
                f"context has {context.n_types} types for {context.atom_types.shape[-1]} "
                f"particles; this EGNN expects n_types={self.n_types} and x has N={n}"
            )
        tf = time_features(t, self.n_frequencies)[:, None, :].expand(batch, n, -1)
        h = self.embed(torch.cat([context.one_hot(batch, x.dtype), tf], dim=-1))
        x0 = x
        for layer in self.layers:
            x, h = layer(x, h)
        v = x - x0
        return v - v.mean(dim=-2, keepdim=True)


class EGNNLayer(nn.Module):
    """One EGNN layer (Satorras et al., 2021) with the first edge linear map factorized over nodes.

    ``m_ij = φ_m(A h_i + B h_j + w d²_ij + W_e e_ij + b)``,
    ``x_i ← x_i + 1/N_i Σ_j (x_i - x_j) φ_x(m_ij) / sqrt(d²_ij + 1)``,
    ``h_i ← h_i + φ_h(h_i, 1/N_i Σ_j m_ij)``

    with ``N_i`` the number of (real) atoms of ``i``'s molecule. Options:

    * ``n_edge_features``: invariant pair features ``e_ij`` (radial basis, bond graph) enter the
      edge network through ``W_e``;
    * ``chiral``: add the pseudovector ``a_i × b_i`` of two more message-weighted sums
      ``Σ_j w_ij (x_i − x_j) / N_i`` to the coordinate update (not reflection equivariant);
    * a padding mask at call time (``keep``): only messages *from* padding atoms (column ``j``)
      are zeroed; what padding atoms receive only changes padding atoms, whose outputs are
      discarded. Self-edges need no mask: ``x_i - x_i = 0``, and ``m_ii`` only adds a node term.

    Args:
        hidden: feature width ``H``.
        update_features: compute the new ``h`` (the last layer of a field does not need it).
        n_edge_features: width of ``e_ij``; 0: none.
        chiral: add the cross-product term.
    """

    def __init__(
        self, hidden: int, *, update_features: bool, n_edge_features: int = 0,
        chiral: bool = False,
    ):
        super().__init__()
        # [A | B] of the edge network's first layer A h_i + B h_j + w d²_ij + b.
        self.node_to_edge = nn.Linear(hidden, 2 * hidden)
        bound = 1.0 / math.sqrt(2 * hidden + 1)
        self.distance_weight = nn.Parameter(torch.empty(hidden).uniform_(-bound, bound))
        self.edge_in = nn.Linear(n_edge_features, hidden, bias=False) if n_edge_features else None
        self.edge = nn.Linear(hidden, hidden)
        self.coord = nn.Linear(hidden, 1)
        # two more coordinate weights whose sums a_i, b_i give the pseudovector a_i × b_i
        self.chiral = nn.Linear(hidden, 2) if chiral else None
        self.node = (
            nn.Sequential(nn.Linear(2 * hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
            if update_features
            else None
        )

    def forward(
        self,
        x: Tensor,
        h: Tensor,
        *,
        keep: Tensor | None = None,
        inv_n: Tensor | float | None = None,
        edges: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Updated ``(x [B, N, d], h [B, N, H])``.

        Args:
            x: positions ``[B, N, d]`` (``d = 3`` with ``chiral``).
            h: features ``[B, N, H]``.
            keep: ``[B, N, 1]`` 1 on real atoms, 0 on padding; None: no padding.
            inv_n: ``1/N_i`` as ``[B, 1, 1]`` or a float; default ``1/N``.
            edges: pair features ``[B, N, N, n_edge_features]`` (needed iff it is > 0).
        """
        n = x.shape[-2]

        def average(s: Tensor) -> Tensor:  # 1/N_i Σ_j s_ij
            if inv_n is None:
                return s.sum(2) / n
            return s.sum(2) * (inv_n if isinstance(inv_n, float) else inv_n.to(s.dtype))

        diff = x[:, :, None, :] - x[:, None, :, :]  # [B, N, N, d]
        d2 = diff.square().sum(-1, keepdim=True)  # [B, N, N, 1]
        a, b = self.node_to_edge(h).chunk(2, dim=-1)
        ab = a[:, :, None, :] + b[:, None, :, :]  # [B, N, N, H]
        if torch.compiler.is_compiling():  # fused by the compiler
            pre = torch.addcmul(ab, d2, self.distance_weight)
        else:  # + w d²_ij as a rank-one product: its backward is two matrix-vector products
            flat = torch.addmm(ab.flatten(0, 2), d2.flatten(0, 2), self.distance_weight[None])
            pre = flat.view(ab.shape)
        if self.edge_in is not None:  # radial basis of d_ij, covalent-graph distance
            if edges is None:
                raise ValueError("this EGNN layer takes edge features: pass edges [B, N, N, F]")
            pre = pre + self.edge_in(edges)
        m = silu(self.edge(silu(pre)))  # [B, N, N, H]
        inv_d = torch.rsqrt(d2 + 1.0)
        weight = self.coord(m) * inv_d  # [B, N, N, 1]
        if keep is not None:
            from_real = keep[:, None, :, :]  # [B, 1, N, 1]: message j -> i exists iff j is real
            weight = weight * from_real
            m = m * from_real.to(m.dtype)
        update = average(diff * weight)
        if self.chiral is not None:
            wa, wb = (self.chiral(m) * inv_d).chunk(2, dim=-1)  # [B, N, N, 1] each
            if keep is not None:
                wa, wb = wa * from_real, wb * from_real
            update = update + torch.linalg.cross(average(diff * wa), average(diff * wb), dim=-1)
        x = x + update
        if self.node is not None:
            h = h + self.node(torch.cat([h, average(m).to(h.dtype)], dim=-1))
        return x, h
