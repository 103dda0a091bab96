"""Training: losses, the fit loop and checkpoints."""

from __future__ import annotations

from .checkpoint import CHECKPOINT_VERSION, load_checkpoint, save_checkpoint
from .fit import fit, make_scheduler
from .losses import (
    combined_loss,
    log_weight_variance,
    nll,
    regularize_energy,
    reverse_kl,
    reweighted_nll,
)

__all__ = [
    "CHECKPOINT_VERSION",
    "combined_loss",
    "log_weight_variance",
    "fit",
    "load_checkpoint",
    "make_scheduler",
    "nll",
    "regularize_energy",
    "reverse_kl",
    "reweighted_nll",
    "save_checkpoint",
]

from .pairing import (  # noqa: E402
    EquivariantOT,
    GroupSlots,
    IndependentPairing,
    MinibatchOT,
    Pairing,
    align_molecule,
    align_pairs,
    molecule_ot,
    transport_cost,
)
from .paths import LinearPath, flow_matching_loss, velocity_loss  # noqa: E402

__all__ += [
    "EquivariantOT",
    "GroupSlots",
    "IndependentPairing",
    "LinearPath",
    "MinibatchOT",
    "Pairing",
    "align_molecule",
    "align_pairs",
    "flow_matching_loss",
    "molecule_ot",
    "transport_cost",
    "velocity_loss",
]
