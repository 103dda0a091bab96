"""``internal``: the classic Boltzmann generator for molecules, a spline flow in internal
coordinates.

``ProductBase`` (normal × uniform on the free torsions) → spline couplings (circular on the free
torsions) → :class:`~boltzflow.transforms.TailBound` (bonds and angles kept within
:data:`TAIL_BOUND` standard deviations) → :class:`~boltzflow.transforms.ic_normalization.ICNormalization` (bonds, angles and
rigid torsions to the data scale; free torsions only rotated) → ``InternalCoordinates`` (each
ring's closing bond a coordinate) →
Cartesian ``x: [B, n_atoms, 3]`` in nm (Noé et al., Science 2019). Trained like
:class:`~boltzflow.models.coupling.CouplingKind`: likelihood and/or reverse KL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..config import RunConfig, check
from ..distributions.mixture import Mixture
from ..distributions.torus import ProductBase
from ..errors import BoltzflowError
from ..flow import Flow
from ..systems.base import System
from ..systems.molecule import MolecularSystem
from ..transforms import Chain, TailBound, coupling_flow, torsion_codes
from ..transforms.builders import position_codes
from ..transforms.ic_normalization import fit_ic_normalization, rigid_torsions
from ..transforms.internal import InternalCoordinates
from ..transforms.zmatrix import build_zmatrix
from .base import ModelKind, TrainingSet
from .coupling import CouplingKind, LikelihoodParams, loss_terms

__all__ = ["TAIL_BOUND", "InternalKind", "InternalParams", "build_molecular_flow",
           "torsion_mask_codes"]

#: Bond lengths, closing bonds and angles stay within this many thermal standard deviations of
#: their mean (a harmonic bond there costs 50 kT): the flow's tails end where the physics does.
TAIL_BOUND = 10.0
#: Checkpoint metadata of the internal-coordinate layout; absent in runs made before ring
#: closures and tail bounds existed, which load as they were trained.
#: Version of :func:`torsion_mask_codes` new flows use (``torsion_masks`` in the layout; ``0``:
#: masks by position, runs made before). Version 1: on Trp-Gly and Pro-Phe the same log-weight
#: spread as version 2 and the higher ESS in every comparison (docs/benchmarks.md).
TORSION_MASKS = 1
LAYOUT = {"ring_closures": True, "tail_bound": TAIL_BOUND, "torsion_masks": TORSION_MASKS}
#: Torsion-shifted frames (``lv_jitter``) this far (kT) above the highest data energy stay out
#: of the log-weight variance: deep clashes would set it, not the rim of the data.
JITTER_MARGIN = 20.0
#: Weight of a torsion about an amide C-N bond (ω) in :func:`torsion_mask_codes` version 2.
AMIDE_WEIGHT = 0.25


@dataclass
class InternalParams(LikelihoodParams):
    """The internal-coordinate flow's section: :class:`LikelihoodParams` (splines only: the
    torsions need circular splines), and the coordinate layout.

    Attributes:
        ring_closures: each ring's closing bond is a coordinate and the ring's own torsions are
            rigid (measured on a Trp peptide: closing-bond widths within a few per cent of MD's
            instead of 2-3× broader, ``docs/molecules.md``).
        tail_bound: bonds, closing bonds and angles stay within this many thermal standard
            deviations (``0``: unbounded, linear spline tails).
        torsion_masks: how the coupling masks group the free torsions
            (:func:`torsion_mask_codes`): ``1`` neighbouring torsions apart; ``2`` the same
            with amide ω weighted down; ``0`` by position in the coordinate vector, under
            which a residue's φ and ψ may never see each other
            (``docs/internal_coordinates.md``).
        lv_jitter: with ``w_lv``, each data frame of the batch also joins the log-weight
            variance with its free torsions shifted by normal noise of this width (rad), so
            that the term sees the rim of the data, where a likelihood fit overshoots (``0``:
            the data alone). Shifted frames more than :data:`JITTER_MARGIN` kT above the
            highest data energy are left out.
        frame_noise: the likelihood sees each data frame with its bonds, angles and rigid
            torsions shifted by normal noise of this many of their standard deviations (the
            flow's normalized units; free torsions unchanged; ``0``: the frames as they are),
            so the flow cannot fit the frames' fast coordinates one by one. The log-weight
            variance keeps the exact frames.
        flows: independently initialized flows trained side by side, each on its own batches
            (seeds ``train.seed + k``); the proposal is their equal mixture
            (:class:`~boltzflow.distributions.Mixture`, exact density), whose weights cannot
            exceed ``flows`` times those of any one of them, so one flow's misses are covered
            by the others. Each training step costs ``flows`` steps.
    """

    NAME = "internal"
    ring_closures: bool = True
    tail_bound: float = TAIL_BOUND
    torsion_masks: int = TORSION_MASKS
    lv_jitter: float = 0.0
    frame_noise: float = 0.0
    flows: int = 1

    def validate(self) -> None:
        """The likelihood checks, a non-negative bound, a known mask version."""
        super().validate()
        self.non_negative("tail_bound", "lv_jitter", "frame_noise")
        check(self.torsion_masks in (0, 1, 2), "internal.torsion_masks", "0, 1 or 2",
              self.torsion_masks)
        check(isinstance(self.flows, int) and self.flows >= 1, "internal.flows",
              "an integer >= 1", self.flows)


class InternalKind(CouplingKind):
    """A spline coupling flow in the internal coordinates of one molecule."""

    name = "internal"
    Params = InternalParams

    @classmethod
    def build(cls, config: RunConfig, source: TrainingSet) -> InternalKind:
        """The flow of ``source.system``, normalization fitted to ``source.data`` (or to the
        minimized structure with typical thermal spreads when there is no data)."""
        system = source.system
        if not isinstance(system, MolecularSystem):
            raise BoltzflowError(
                f"model 'internal' needs a molecule; {system.id!r} is not one: use model "
                "coupling"
            )
        p = config.params
        flows = [build_molecular_flow(system, p, source.data, ring_closures=p.ring_closures,
                                      tail_bound=p.tail_bound or None,
                                      torsion_masks=p.torsion_masks) for _ in range(p.flows)]
        return cls(config, ensemble(flows), system, source.data)

    @classmethod
    def restore(cls, config: RunConfig, metadata: dict[str, Any], system: System | None
                ) -> ModelKind:
        """The same architecture, normalization from the minimized structure (the
        checkpoint's state replaces it); the layout the checkpoint records, whatever the
        config says (runs from before ring closures, tail bounds and torsion masks have
        none of them)."""
        if not isinstance(system, MolecularSystem):
            return cls.build(config, TrainingSet(system))  # raises the one-line error
        flows = [build_molecular_flow(
            system, config.params, ring_closures=bool(metadata.get("ring_closures", False)),
            tail_bound=metadata.get("tail_bound"),
            torsion_masks=int(metadata.get("torsion_masks", 0)))
            for _ in range(int(metadata.get("flows", 1)))]
        return cls(config, ensemble(flows), system, None)

    @property
    def flows(self) -> list[Flow]:
        """The trained flows (one unless ``flows`` > 1)."""
        return list(self.module.components) if isinstance(self.module, Mixture) else [self.module]

    def batch(self, step: int) -> Any:
        """:meth:`CouplingKind.batch`; with several flows, a list of one batch per flow (flow
        ``k`` draws from seed ``train.seed + k``)."""
        if len(self.flows) == 1:
            return super().batch(step)
        return [self.batch_of(step, self.config.train.seed + k) for k in range(len(self.flows))]

    def loss(self, batch: Any, step: int) -> dict[str, Tensor]:
        """:meth:`CouplingKind.loss`; with several flows, the sum of each flow's loss on its
        own batch (the parts, e.g. ``nll``, their mean)."""
        if len(self.flows) == 1:
            return super().loss(batch, step)
        seed = self.config.train.seed
        each = [self.loss_of(flow, b, step, seed + k)
                for k, (flow, b) in enumerate(zip(self.flows, batch))]
        parts = {key: torch.stack([e[key] for e in each]).mean() for key in each[0]}
        parts["loss"] = torch.stack([e["loss"] for e in each]).sum()
        return parts

    def loss_of(self, module: Flow, batch: Any, step: int, seed: int) -> dict[str, Tensor]:
        """:meth:`CouplingKind.loss_of`; with ``frame_noise``, the likelihood term on the
        frames with noisy fast coordinates (:func:`noisy_nll`) in place of the exact frames."""
        parts = super().loss_of(module, batch, step, seed)
        if self.params.frame_noise > 0 and "nll" in parts:
            x = batch[0] if isinstance(batch, tuple) else batch
            noisy = noisy_nll(module, x, self.params.frame_noise)
            w = self.params.w_nll
            parts["loss"] = parts["loss"] - w * parts["nll"] + w * noisy
            parts["nll"] = noisy
        return parts

    def lv_reference(self, module: Flow, x: Tensor, u: Tensor) -> tuple[Tensor, Tensor] | None:
        """With ``lv_jitter``: the batch with shifted free torsions (:func:`shift_torsions`)
        and their energies, those within :data:`JITTER_MARGIN` kT of the highest data energy;
        they join the data in the log-weight variance."""
        if self.params.lv_jitter <= 0:
            return None
        with torch.no_grad():
            xs = shift_torsions(module, x, self.params.lv_jitter)
            us = self.energy.energy(xs)
            keep = torch.isfinite(us) & (us <= self.data_energies().max() + JITTER_MARGIN)
        return xs[keep], us[keep]

    def metadata(self) -> dict[str, Any]:
        """The internal-coordinate layout (:data:`LAYOUT`)."""
        return dict(self.layout)

    @property
    def layout(self) -> dict[str, Any]:
        """Ring closures, tail bound and torsion masks of the flows, and how many there are
        (``flows``, recorded when more than one)."""
        flows = self.flows
        layout = dict(getattr(flows[0], "layout", LAYOUT))
        return layout | ({"flows": len(flows)} if len(flows) > 1 else {})

    def describe(self) -> str:
        """Layers, widths and loss weights."""
        p, k = self.params, len(self.flows)
        what = (f"an equal mixture of {k} flows of {p.n_layers}" if k > 1 else f"{p.n_layers}")
        return (f"{what} internal-coordinate spline coupling layers, hidden {p.hidden}; "
                f"{self.config.train.steps} steps, loss = {loss_terms(p)}")


def ensemble(flows: list[Flow]) -> Flow | Mixture:
    """One flow as it is (its checkpoint keys unchanged); several as their equal mixture."""
    return flows[0] if len(flows) == 1 else Mixture(flows)


def build_molecular_flow(
    system: MolecularSystem, params: LikelihoodParams, data: Tensor | None = None, *,
    ring_closures: bool = True, tail_bound: float | None = TAIL_BOUND,
    torsion_masks: int = TORSION_MASKS,
) -> Flow:
    """A spline coupling flow in internal coordinates for a molecular system.

    The Z-matrix comes from the system's bond graph (:func:`build_zmatrix`); the flow acts on the
    ``3 n_atoms - 6`` internal coordinates, with circular splines on the torsions and interval
    splines on ``[-bound, bound]`` (normalized units) on bonds and angles; the normalization is
    fitted to ``data`` mapped to internal coordinates, or set from ``system.positions`` and
    typical thermal spreads without data (energy-only training). Samples come out in the
    canonical frame of :class:`InternalCoordinates`; ``log_q`` is a density on Cartesian space
    modulo rigid motions, so ``log_w = -u(x) - log_q(x)`` are exact importance weights.

    Args:
        system: the molecule (its ``topology`` with bonds; ``positions`` without ``data``).
        params: ``n_layers``, ``hidden``, ``n_bins``, ``bound``.
        data: reference configurations ``[n, n_atoms, 3]`` (nm) to fit the normalization.
        ring_closures: each ring's closing bond is a coordinate
            (:func:`~boltzflow.transforms.zmatrix.zmatrix_from_graph`).
        tail_bound: bonds, closing bonds and angles stay within this many standard deviations
            (:class:`~boltzflow.transforms.TailBound` beyond ``params.bound``; at least twice it);
            ``None``: no bound.
        torsion_masks: version of :func:`torsion_mask_codes` that chooses the coupling masks
            (``0``: by position in the vector, :func:`~boltzflow.transforms.coupling_masks`'
            default).

    Returns:
        A :class:`~boltzflow.flow.Flow` with ``event_shape = (n_atoms, 3)``; float32 buffers and
        parameters. Built without data it has the same architecture, so a checkpoint's
        ``state_dict`` loads into it.

    Example:
        >>> flow = build_molecular_flow(bf.systems.get("aldp-implicit"), InternalParams(),
        ...                             data=train_x)  # doctest: +SKIP
        >>> x, log_q = flow.sample_and_log_prob(64)  # doctest: +SKIP
    """
    ic = InternalCoordinates(build_zmatrix(system.topology, ring_closures=ring_closures))
    if data is None:
        if system.positions is None:
            raise BoltzflowError(
                f"system {system.id!r} has no positions; pass data to fit the normalization"
            )
        data = torch.as_tensor(system.positions).reshape(1, ic.n_atoms, 3)
    rigid = rigid_torsions(ic, system.topology, rings=ring_closures)
    circular = ic.torsion_indices[~rigid].tolist()
    codes = (torsion_mask_codes(ic, circular, system.topology, int(torsion_masks))
             if torsion_masks else None)
    couplings = coupling_flow(
        ic.dim, n_layers=params.n_layers, kind="spline", hidden=tuple(params.hidden),
        n_bins=params.n_bins, bound=params.bound, circular=circular, codes=codes,
    )
    if tail_bound is not None:  # appended to the couplings: no state, old checkpoints load
        physical = torch.cat([ic.length_indices, ic.true_angle_indices])
        couplings.bijections.append(
            TailBound(ic.dim, physical, inner=params.bound, outer=max(tail_bound, 2 * params.bound)))
    norm = fit_ic_normalization(ic, data, rigid).float()
    flow = Flow(ProductBase(ic.dim, circular), Chain([couplings, norm, ic]), (ic.n_atoms, 3))
    flow.layout = {"ring_closures": ring_closures, "tail_bound": tail_bound,
                   "torsion_masks": int(torsion_masks)}
    flow.free_torsions = circular  # positions of the free torsions in the coordinate vector
    return flow


def noisy_nll(flow: Flow, x: Tensor, width: float) -> Tensor:
    """``−mean log q`` of the frames ``x`` with every coordinate but the free torsions shifted
    by ``width`` × normal noise in the flow's normalized space (:func:`build_molecular_flow`:
    couplings, normalization, internal coordinates). The normalization and the internal
    coordinates have no trained parameters, so the gradient needs only the couplings' inverse
    on the noisy coordinates; their constant log-determinants at the exact frames are added so
    the value reads as an NLL."""
    couplings, norm, ic = flow.bijection.bijections
    with torch.no_grad():
        y, ld_ic = ic.inverse(x)
        v, ld_norm = norm.inverse(y)
        noise = width * torch.randn_like(v)
        noise[:, torch.as_tensor(flow.free_torsions, dtype=torch.long, device=v.device)] = 0
        v = v + noise
    z, ld = couplings.inverse(v)
    return -(flow.base.log_prob(z) + ld + ld_norm + ld_ic).mean()


def shift_torsions(flow: Flow, x: Tensor, width: float) -> Tensor:
    """``x: [B, n_atoms, 3]`` with the free torsions of ``flow`` (:func:`build_molecular_flow`)
    shifted by independent normal noise of ``width`` rad; bonds, angles and the rings' rigid
    torsions unchanged, so the result lies in the flow's image (canonical frame)."""
    ic = flow.bijection.bijections[-1]
    z, _ = ic.inverse(x)
    free = torch.as_tensor(flow.free_torsions, dtype=torch.long, device=x.device)
    shifted = z[:, free] + width * torch.randn(len(z), len(free), dtype=z.dtype, device=z.device)
    z = z.index_copy(1, free, torch.remainder(shifted + torch.pi, 2 * torch.pi) - torch.pi)
    return ic(z)[0]


def torsion_mask_codes(ic: InternalCoordinates, circular: list[int], topology,
                       version: int = TORSION_MASKS) -> Tensor:
    """Two-bit mask codes ``[ic.dim]`` (:func:`~boltzflow.transforms.coupling_masks`) that
    give neighbouring free torsions different codes.

    Bonds, angles and rigid torsions keep the default codes (parity and half of their position
    in the vector); the free torsions (``circular``) get
    :func:`~boltzflow.transforms.torsion_codes` of their axes. By position alone, the φ, ψ
    and ω torsions of a capped Trp-Gly's two residues shared one code and none conditioned on
    another (``docs/internal_coordinates.md``). Version 2 weights the torsions about amide C-N
    bonds (ω, stiff) by :data:`AMIDE_WEIGHT`, so that φ and ψ, and ψ and the next φ across the
    peptide bond, differ in both bits and meet in every layer (version 1 lets ω take the
    difference in bit 0 from the next φ on Pro-Phe); measured, it was no better.

    Args:
        ic: the internal coordinates (its Z-matrix rows name each torsion's axis).
        circular: positions of the free torsions in the flat vector.
        topology: the molecule's mdtraj topology (its bonds).
        version: ``1`` or ``2`` (the layouts that name them).
    """
    from ..systems.encoding import covalent_hops

    codes = position_codes(ic.dim)
    if not circular:
        return codes
    first = int(ic.torsion_indices[0])
    axes = [ic.zmatrix.rows[3 + t - first, 1:3].tolist() for t in circular]
    weights = None
    if version >= 2:
        amide = amide_bonds(topology)
        weights = [AMIDE_WEIGHT if frozenset(a) in amide else 1.0 for a in axes]
    codes[circular] = torch.tensor(
        torsion_codes(axes, covalent_hops(topology, max_hops=2), weights))
    return codes


def amide_bonds(topology) -> set[frozenset[int]]:
    """The C-N bonds of an mdtraj topology whose carbon carries a carbonyl oxygen (an oxygen
    with no other bond): the peptide bonds and other amides, as atom-index pairs."""
    bonded: dict[int, list] = {a.index: [] for a in topology.atoms}
    for a, b in topology.bonds:
        bonded[a.index].append(b)
        bonded[b.index].append(a)
    out = set()
    for a, b in topology.bonds:
        for c, n in ((a, b), (b, a)):
            if (c.element.symbol == "C" and n.element.symbol == "N"
                    and any(o.element.symbol == "O" and len(bonded[o.index]) == 1
                            for o in bonded[c.index])):
                out.add(frozenset((c.index, n.index)))
    return out
