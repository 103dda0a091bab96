"""Torsion-shifted data frames in the log-weight variance (``internal.lv_jitter``): the
likelihood and the variance over MD frames never see the rim of the data, where a flow's smooth
torsion densities overshoot; frames with their free torsions shifted do, and they carry exact
energies."""

from __future__ import annotations

import pytest
import torch

import boltzflow as bf
from boltzflow.errors import BoltzflowError
from boltzflow.models import TrainingSet, parse_config
from boltzflow.models.internal import JITTER_MARGIN, InternalKind, shift_torsions
from boltzflow.training import distributed

TRP_GLY = "peptide:ACE-TRP-GLY-NME"


def _kind(lv_jitter: float) -> InternalKind:
    system = bf.systems.get(TRP_GLY)
    x0 = torch.as_tensor(system.positions, dtype=torch.float32).reshape(1, -1, 3)
    data = x0 + 0.002 * torch.randn(64, *x0.shape[1:])  # thermal-ish frames around the minimum
    config = parse_config({
        "model": "internal", "system": {"id": TRP_GLY},
        "internal": {"n_layers": 2, "hidden": [16], "w_kl": 0.0, "w_lv": 0.5,
                     "lv_jitter": lv_jitter},
        "train": {"batch_size": 32},
    })
    return InternalKind.build(config, TrainingSet(system, data))


def test_shift_moves_only_the_free_torsions_by_the_width():
    kind = _kind(0.3)
    flow, ic = kind.module, kind.module.bijection.bijections[-1]
    x = kind.data[:1].repeat(512, 1, 1)
    z0, _ = ic.inverse(x)
    z1, _ = ic.inverse(shift_torsions(flow, x, 0.3))
    free = torch.zeros(ic.dim, dtype=torch.bool)
    free[flow.free_torsions] = True
    assert free.sum() == 11  # φ, ψ, ω, χ and methyl rotors of Trp-Gly; not the rings' torsions
    assert (z1 - z0)[:, ~free].abs().max() < 1e-4  # bonds, angles, closing bonds, ring torsions
    delta = torch.remainder(z1 - z0 + torch.pi, 2 * torch.pi)[:, free] - torch.pi
    assert delta.mean(0).abs().max() < 0.06
    assert torch.allclose(delta.std(0), torch.full((11,), 0.3), rtol=0.15)


def test_shifted_frames_join_the_variance_with_their_energies():
    kind = _kind(0.3)
    x, u = kind.batch(5)
    xs, us = kind.lv_reference(kind.module, x, u)
    assert 0 < len(xs) <= len(x)
    assert us.max() <= kind.data_energies().max() + JITTER_MARGIN
    torch.testing.assert_close(us, kind.energy.energy(xs), atol=1e-3, rtol=1e-5)  # float32
    # the loss's variance is over the batch and the shifted frames the step's seed draws
    parts = kind.loss((x, u), 5)
    torch.manual_seed(distributed.step_seed(kind.config.train.seed, 5))
    xs, us = kind.lv_reference(kind.module, x, u)
    with torch.no_grad():
        a = torch.cat([kind.module.log_prob(x) + u, kind.module.log_prob(xs) + us])
    torch.testing.assert_close(parts["lv"].detach(), a.var(unbiased=False))
    assert not torch.allclose(parts["lv"].detach(), (kind.module.log_prob(x) + u).var(
        unbiased=False).detach())
    assert kind.describe().endswith("over the data and its torsions shifted 0.3 rad")
    assert _kind(0.0).lv_reference(kind.module, x, u) is None


def test_negative_width_is_one_line():
    with pytest.raises(BoltzflowError, match="internal.lv_jitter") as err:
        parse_config({"model": "internal", "internal": {"lv_jitter": -0.1}})
    assert len(str(err.value).splitlines()) == 1
