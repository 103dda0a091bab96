"""The ``internal`` kind on a molecule with a ring: closing bonds as coordinates, bounded tails,
exact densities, and old checkpoints keeping the layout they were trained with."""

from __future__ import annotations

import torch

import boltzflow as bf
from boltzflow.models import parse_config
from boltzflow.models.internal import LAYOUT, TAIL_BOUND, InternalKind, build_molecular_flow
from boltzflow.transforms import InternalCoordinates

PHE = "peptide:ACE-PHE-NME"
PARAMS = parse_config({"model": "internal", "internal": {"n_layers": 4, "hidden": [32]}}).params


def _flow(**layout):
    torch.manual_seed(0)
    flow = build_molecular_flow(bf.systems.get(PHE), PARAMS, **layout)
    for p in flow.parameters():  # a non-trivial flow
        p.data.normal_(0, 0.1)
    return flow.double()


def test_ring_flow_log_prob_of_own_samples_equals_log_q():
    flow = _flow()
    ic: InternalCoordinates = flow.bijection.bijections[2]
    assert int(ic.zmatrix.closures.sum()) == 1
    x, log_q = flow.sample_and_log_prob(256)
    feasible = torch.isfinite(log_q)  # a ring that cannot close has log_q = +inf (weight 0)
    assert feasible.float().mean() > 0.8 and (log_q[~feasible] == torch.inf).all()
    assert torch.allclose(flow.log_prob(x[feasible]), log_q[feasible], atol=1e-7)


def test_tail_bound_keeps_bonds_and_angles_within_range():
    """A latent 40 standard deviations out stretches bonds without the bound, not with it."""
    bounded, free = _flow(), _flow(tail_bound=None)
    ic: InternalCoordinates = bounded.bijection.bijections[2]
    physical = torch.cat([ic.length_indices, ic.true_angle_indices])
    g = torch.Generator().manual_seed(1)
    z = 40 * torch.randn(16, ic.dim, generator=g, dtype=torch.float64)
    z[:, ic.torsion_indices] = z[:, ic.torsion_indices].remainder(6.28) - 3.14
    out = {}
    for name, flow in (("bounded", bounded), ("free", free)):
        normalized, _ = flow.bijection.bijections[0].forward(z)  # what the normalization gets
        out[name] = normalized[:, physical].abs().max()
    assert out["bounded"] <= TAIL_BOUND + 1e-6
    assert out["free"] > 2 * TAIL_BOUND


def test_checkpoint_layout_new_and_old():
    """New models record ring closures and the bound; a checkpoint without them (made before)
    restores without either, so it samples what it was trained on."""
    system = bf.systems.get(PHE)
    config = parse_config({"model": "internal", "system": {"id": PHE},
                           "internal": {"n_layers": 4, "hidden": [32]}})
    old = InternalKind.restore(config, {}, system)
    assert old.metadata() == {"ring_closures": False, "tail_bound": None, "torsion_masks": False}
    assert not old.module.bijection.bijections[2].zmatrix.closures.any()
    new = InternalKind.restore(config, LAYOUT, system)
    assert new.metadata() == LAYOUT
    assert new.module.bijection.bijections[2].zmatrix.closures.sum() == 1
