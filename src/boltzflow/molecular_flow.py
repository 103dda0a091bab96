"""The classic Boltzmann generator for molecules: a spline flow in internal coordinates.

``ProductBase`` (normal × uniform torsions) → spline couplings (circular on torsions) →
``Normalization`` (bonds and angles to the data scale; torsions only rotated) →
``InternalCoordinates`` → Cartesian ``x: [B, n_atoms, 3]`` in nm (Noé et al., Science 2019).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .config import TrainConfig
from .distributions.torus import ProductBase
from .errors import ConfigError
from .flow import Flow
from .transforms import Chain, Normalization, coupling_flow
from .transforms.internal import InternalCoordinates
from .transforms.zmatrix import build_zmatrix

__all__ = ["BOND_STD", "ANGLE_STD", "build_molecular_flow", "fit_ic_normalization"]

#: Scales (nm, rad) used without data: thermal spreads of bonds and angles of a small peptide at
#: 300 K (measured on alanine dipeptide MD: 0.0022-0.0030 nm and 0.047-0.072 rad).
BOND_STD = 0.003
ANGLE_STD = 0.06


def fit_ic_normalization(ic: InternalCoordinates, x: Tensor) -> Normalization:
    """A :class:`Normalization` of the flat internal coordinates, fitted to Cartesian ``x``.

    Bonds and angles get the mean and standard deviation of ``x``'s internal coordinates, so a
    standard-normal latent maps to the data's scale (bond spreads are ~0.003 nm, so the splines'
    ``bound`` acts in this normalized space). Torsions keep unit scale (a circle cannot be
    stretched) and are shifted by their circular mean, a rotation of the circle that moves
    narrow peaks at ±π (planar groups) away from the splines' seam; its log-det is 0.
    With a single configuration (e.g. the minimized structure) the means are its coordinates
    and the scales :data:`BOND_STD`, :data:`ANGLE_STD`.

    Args:
        ic: the internal-coordinate transform.
        x: configurations ``[n, n_atoms, 3]`` (nm), any pose.

    Returns:
        The fitted (non-trainable) normalization on ``[B, 3 n_atoms - 6]``.
    """
    if x.dim() != 3 or x.shape[1:] != (ic.n_atoms, 3) or len(x) < 1:
        raise ValueError(
            f"data must have shape [n >= 1, {ic.n_atoms}, 3] (nm), got {list(x.shape)}"
        )
    z = ic.inverse(x.detach().to(torch.float64))[0]
    torsions = ic.torsion_indices
    shift = z.mean(0)
    shift[torsions] = torch.atan2(z[:, torsions].sin().mean(0), z[:, torsions].cos().mean(0))
    if len(z) >= 2:
        log_scale = z.std(0).clamp_min(1e-6).log()
    else:
        log_scale = torch.zeros(ic.dim, dtype=torch.float64)
        log_scale[ic.bond_indices] = math.log(BOND_STD)
        log_scale[ic.angle_indices] = math.log(ANGLE_STD)
    log_scale[torsions] = 0.0
    norm = Normalization(ic.dim)
    norm.shift.copy_(shift)
    norm.log_scale.copy_(log_scale)
    return norm


def build_molecular_flow(system, config: TrainConfig, data: Tensor | None = None) -> Flow:
    """A spline coupling flow in internal coordinates for a molecular system.

    The Z-matrix comes from the system's bond graph (:func:`build_zmatrix`); the flow acts on the
    ``3 n_atoms - 6`` internal coordinates, with circular splines on the torsions and interval
    splines on ``[-bound, bound]`` (normalized units) on bonds and angles; the normalization is
    fitted to ``data`` mapped to internal coordinates, or set from ``system.positions`` and
    typical thermal spreads without data (energy-only training). Samples come out in the
    canonical frame of :class:`InternalCoordinates`; ``log_q`` is a density on Cartesian space
    modulo rigid motions, so ``log_w = -u(x) - log_q(x)`` are exact importance weights.

    Args:
        system: a :class:`~boltzflow.systems.molecule.MolecularSystem` (needs ``topology``
            with bonds, and ``positions`` when ``data`` is ``None``).
        config: uses ``model`` (must be ``"spline"``), ``n_layers``, ``hidden``, ``n_bins``,
            ``bound``.
        data: reference configurations ``[n, n_atoms, 3]`` (nm) to fit the normalization.

    Returns:
        A :class:`~boltzflow.flow.Flow` with ``event_shape = (n_atoms, 3)``; float32 buffers and
        parameters (move it with ``.to(device, dtype)``). Built without data it has the same
        architecture, so a checkpoint's ``state_dict`` loads into it.

    Example:
        >>> flow = build_molecular_flow(bf.systems.get("aldp-implicit"), TrainConfig(),
        ...                             data=train_x)  # doctest: +SKIP
        >>> x, log_q = flow.sample_and_log_prob(64)  # doctest: +SKIP
    """
    if config.model != "spline":
        raise ConfigError(
            f"config key 'model' must be 'spline' for a molecular system (torsions need "
            f"circular splines), got {config.model!r}"
        )
    topology = getattr(system, "topology", None)
    if topology is None:
        raise ValueError(f"system {system.id!r} has no topology: it is not a molecular system")
    ic = InternalCoordinates(build_zmatrix(topology))
    if data is None:
        if system.positions is None:
            raise ValueError(
                f"system {system.id!r} has no positions; pass data to fit the normalization"
            )
        data = torch.as_tensor(system.positions).reshape(1, ic.n_atoms, 3)
    torsions = ic.torsion_indices.tolist()
    couplings = coupling_flow(
        ic.dim,
        n_layers=config.n_layers,
        kind="spline",
        hidden=tuple(config.hidden),
        n_bins=config.n_bins,
        bound=config.bound,
        circular=torsions,
    )
    norm = fit_ic_normalization(ic, data).float()
    return Flow(ProductBase(ic.dim, torsions), Chain([couplings, norm, ic]), (ic.n_atoms, 3))
