"""``PeptideEGNN``: a molecule-conditioned EGNN vector field over padded batches of peptides."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..systems.encoding import FEATURES, MAX_HOPS, PeptideContext, Vocabulary
from .egnn import EGNNLayer
from .field import VectorField, time_features

__all__ = ["PeptideEGNN"]


class PeptideEGNN(VectorField):
    """An E(3)-equivariant graph network conditioned on each atom's "TBG + full" encoding.

    The layers of :class:`~boltzflow.continuous.EGNN` (:class:`EGNNLayer`: Satorras et al.,
    2021; factorized first edge layer, cached SiLU) with

    * node features ``h_0 = Σ_f E_f[token_f] + W·time_features(t)``: one learned embedding per
      column of the encoding (element, atom name, amino acid, chain position, terminus);
    * padding masks: on a padded batch (``context.mask [B, Nmax]``) every message from a padding
      atom is zeroed, the averages ``1/N Σ_j`` run over each molecule's ``N`` real atoms, the
      output is mean-free over the real atoms and exactly 0 on padding. So a molecule gets the
      same velocity alone as padded in a batch with bigger ones (to float round-off), and
      padding positions never matter.

    It commutes with rotations, reflections and translations of each molecule, and with
    permutations of atoms of equal encoding (hydrogens on one heavy atom). Without a mask (one
    molecule, as in sampling) no masking work is done at all.

    Args:
        vocabulary: token lists of the encoding (sizes of the embedding tables).
        hidden: feature width.
        n_layers: message-passing layers.
        n_frequencies: Fourier frequencies of the time embedding.
        n_rbf: Gaussian radial basis functions of the input distances ``d_ij`` (field units,
            centres on ``[0, rbf_max]``) added to every edge network's input; 0: none.
        rbf_max: largest RBF centre.
        bond_graph: add the one-hot covalent-graph distance of each pair (bonded, 1-3, 1-4,
            farther; ``context.hops``) to every edge network's input — an extension of the
            "TBG + full" encoding, which has no bonds.
        chiral: add a pseudovector term to every coordinate update, the cross product
            ``a_i × b_i`` of two learned message-weighted sums ``Σ_j w_ij (x_i − x_j)``. The
            field then commutes with rotations, translations and permutations but *not* with
            reflections (the cross product changes sign under a mirror): it can tell L from D
            and learn the L-only data distribution, where an E(3) field generates both mirror
            images and needs the mirror fix (which cannot repair mixed chiralities).

    Example:
        >>> field = PeptideEGNN(Vocabulary(), hidden=32, n_layers=3)
        >>> v = field(t, x, PeptideContext.pad([enc_a, enc_b]))  # doctest: +SKIP
    """

    def __init__(
        self,
        vocabulary: Vocabulary | None = None,
        *,
        hidden: int = 64,
        n_layers: int = 4,
        n_frequencies: int = 4,
        n_rbf: int = 0,
        rbf_max: float = 3.0,
        bond_graph: bool = False,
        chiral: bool = False,
    ):
        super().__init__()
        if n_layers < 1 or hidden < 1 or n_rbf < 0:
            raise ValueError("PeptideEGNN needs n_layers >= 1, hidden >= 1 and n_rbf >= 0")
        self.vocabulary = vocabulary or Vocabulary()
        self.hidden, self.n_layers, self.n_frequencies = hidden, n_layers, n_frequencies
        self.n_rbf, self.rbf_max, self.bond_graph = n_rbf, rbf_max, bond_graph
        self.chiral = chiral
        sizes = self.vocabulary.sizes
        self.embeddings = nn.ModuleList(nn.Embedding(sizes[f], hidden) for f in FEATURES)
        for emb in self.embeddings:  # sum of 5 embeddings: keep h_0 at unit scale
            nn.init.normal_(emb.weight, std=1.0 / math.sqrt(len(FEATURES)))
        self.time = nn.Linear(1 + 2 * n_frequencies, hidden)
        self.n_edge_features = n_rbf + (MAX_HOPS + 2 if bond_graph else 0)
        if n_rbf:
            self.register_buffer("rbf_centers", torch.linspace(0.0, rbf_max, n_rbf))
        self.layers = nn.ModuleList(
            EGNNLayer(
                hidden, update_features=i < n_layers - 1, n_edge_features=self.n_edge_features,
                chiral=chiral,
            )
            for i in range(n_layers)
        )

    def edge_features(self, x: Tensor, context: PeptideContext) -> Tensor:
        """Invariant pair features ``[B, N, N, n_rbf (+ MAX_HOPS + 2)]``, computed once per call.

        Gaussian radial basis functions of the input distances ``d_ij`` (centres evenly on
        ``[0, rbf_max]``, width their spacing) and the one-hot covalent-graph distance of the
        pair; each layer adds its own linear map of them to its edge network's input.
        """
        parts = []
        if self.n_rbf:
            d2 = (x[:, :, None, :] - x[:, None, :, :]).square().sum(-1, keepdim=True)
            d = torch.sqrt(d2 + 1e-12)  # finite gradient on the diagonal
            width = self.rbf_max / self.n_rbf
            parts.append(torch.exp(-(((d - self.rbf_centers) / width) ** 2)))
        if self.bond_graph:
            if context.hops is None:
                raise ValueError("this PeptideEGNN uses the bond graph: the context needs hops")
            hops = context.hops.expand(x.shape[0], x.shape[1], x.shape[1])
            parts.append(nn.functional.one_hot(hops, MAX_HOPS + 2).to(x.dtype))
        return torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]

    def embed(self, tokens: Tensor) -> Tensor:
        """Per-atom features ``[..., N, hidden]`` of ``tokens [..., N, 5]`` (time not included)."""
        return sum(emb(tokens[..., k]) for k, emb in enumerate(self.embeddings))

    def velocity(self, t: Tensor, x: Tensor, context: PeptideContext | None) -> Tensor:
        if not isinstance(context, PeptideContext):
            raise ValueError("PeptideEGNN needs a PeptideContext (the molecule's encoding)")
        if x.dim() != 3 or x.shape[-1] != 3:
            raise ValueError(f"x must be [B, N, 3], got {list(x.shape)}")
        batch, n = x.shape[:2]
        if context.tokens.shape[-2] != n:
            raise ValueError(f"context describes {context.tokens.shape[-2]} atoms, x has {n}")
        h = self.embed(context.tokens).to(x.dtype)
        h = h + self.time(time_features(t, self.n_frequencies))[:, None, :]  # [B, N, H]
        mask = context.mask
        if mask is None:
            keep = None
            inv_n = 1.0 / n
        else:
            if mask.shape != (batch, n):
                raise ValueError(f"mask must be [B, N] = {[batch, n]}, got {list(mask.shape)}")
            keep = mask.to(x.dtype)[..., None]  # [B, N, 1]
            x = x * keep  # padding positions (possibly garbage) never enter the graph
            inv_n = (1.0 / context.n_real.to(x.dtype))[:, None, None]  # [B, 1, 1]
        edges = self.edge_features(x, context) if self.n_edge_features else None
        x0 = x
        for layer in self.layers:
            x, h = layer(x, h, keep=keep, inv_n=inv_n, edges=edges)
        v = x - x0
        if keep is None:
            return v - v.mean(dim=-2, keepdim=True)
        v = v * keep
        return (v - v.sum(dim=-2, keepdim=True) * inv_n) * keep

