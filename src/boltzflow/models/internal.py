"""``internal``: the classic Boltzmann generator for molecules, a spline flow in internal
coordinates.

``ProductBase`` (normal × uniform on the free torsions) → spline couplings (circular on the free
torsions) → :class:`~boltzflow.transforms.ic_normalization.ICNormalization` (bonds, angles and
rigid torsions to the data scale; free torsions only rotated) → ``InternalCoordinates`` →
Cartesian ``x: [B, n_atoms, 3]`` in nm (Noé et al., Science 2019). Trained like
:class:`~boltzflow.models.coupling.CouplingKind`: likelihood and/or reverse KL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..config import RunConfig
from ..distributions.torus import ProductBase
from ..errors import BoltzflowError
from ..flow import Flow
from ..systems.base import System
from ..systems.molecule import MolecularSystem
from ..transforms import Chain, coupling_flow
from ..transforms.ic_normalization import fit_ic_normalization, rigid_torsions
from ..transforms.internal import InternalCoordinates
from ..transforms.zmatrix import build_zmatrix
from .base import ModelKind, TrainingSet
from .coupling import CouplingKind, LikelihoodParams

__all__ = ["InternalKind", "InternalParams", "build_molecular_flow"]


@dataclass
class InternalParams(LikelihoodParams):
    """The internal-coordinate flow's section: :class:`LikelihoodParams` (splines only: the
    torsions need circular splines)."""

    NAME = "internal"


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
        return cls(config, build_molecular_flow(system, config.params, source.data), system,
                   source.data)

    @classmethod
    def restore(cls, config: RunConfig, metadata: dict[str, Any], system: System | None
                ) -> ModelKind:
        """The same architecture, normalization from the minimized structure (the
        checkpoint's state replaces it)."""
        return cls.build(config, TrainingSet(system))

    def describe(self) -> str:
        """Layers, widths and loss weights."""
        p = self.params
        return (f"{p.n_layers} internal-coordinate spline coupling layers, hidden {p.hidden}; "
                f"{self.config.train.steps} steps, loss = {p.w_nll:g}·NLL + "
                f"{p.w_kl:g}·reverse KL")


def build_molecular_flow(
    system: MolecularSystem, params: LikelihoodParams, data: Tensor | None = None
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

    Returns:
        A :class:`~boltzflow.flow.Flow` with ``event_shape = (n_atoms, 3)``; float32 buffers and
        parameters. Built without data it has the same architecture, so a checkpoint's
        ``state_dict`` loads into it.

    Example:
        >>> flow = build_molecular_flow(bf.systems.get("aldp-implicit"), InternalParams(),
        ...                             data=train_x)  # doctest: +SKIP
        >>> x, log_q = flow.sample_and_log_prob(64)  # doctest: +SKIP
    """
    ic = InternalCoordinates(build_zmatrix(system.topology))
    if data is None:
        if system.positions is None:
            raise BoltzflowError(
                f"system {system.id!r} has no positions; pass data to fit the normalization"
            )
        data = torch.as_tensor(system.positions).reshape(1, ic.n_atoms, 3)
    rigid = rigid_torsions(ic, system.topology)
    circular = ic.torsion_indices[~rigid].tolist()
    couplings = coupling_flow(
        ic.dim, n_layers=params.n_layers, kind="spline", hidden=tuple(params.hidden),
        n_bins=params.n_bins, bound=params.bound, circular=circular,
    )
    norm = fit_ic_normalization(ic, data, rigid).float()
    return Flow(ProductBase(ic.dim, circular), Chain([couplings, norm, ic]), (ic.n_atoms, 3))
