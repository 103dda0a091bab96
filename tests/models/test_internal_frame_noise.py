"""Noisy fast coordinates in the likelihood (``internal.frame_noise``): the likelihood term sees
each frame with its bonds, angles and rigid torsions shifted in the flow's normalized units; the
log-weight variance keeps the exact frames."""

from __future__ import annotations

import pytest
import torch

import boltzflow as bf
from boltzflow.errors import BoltzflowError
from boltzflow.models import TrainingSet, parse_config
from boltzflow.models.internal import InternalKind, noisy_nll
from boltzflow.training import distributed, log_weight_variance

ALDP = "aldp-implicit"


def _kind(frame_noise: float) -> InternalKind:
    system = bf.systems.get(ALDP)
    x0 = torch.as_tensor(system.positions, dtype=torch.float32).reshape(1, -1, 3)
    data = x0 + 0.002 * torch.randn(64, *x0.shape[1:])
    config = parse_config({
        "model": "internal", "system": {"id": ALDP},
        "internal": {"n_layers": 2, "hidden": [16], "w_kl": 0.0, "w_lv": 0.5,
                     "frame_noise": frame_noise},
        "train": {"batch_size": 32},
    })
    return InternalKind.build(config, TrainingSet(system, data))


def test_zero_noise_is_the_likelihood():
    kind = _kind(0.0)
    x = kind.data[:16]
    torch.testing.assert_close(noisy_nll(kind.module, x, 0.0), -kind.module.log_prob(x).mean())


def test_noise_moves_only_the_fast_coordinates_and_reaches_the_parameters(monkeypatch):
    kind = _kind(0.1)
    flow = kind.module
    couplings, norm, ic = flow.bijection.bijections
    x = kind.data[:1].repeat(2000, 1, 1)
    seen = {}
    inverse = couplings.inverse
    monkeypatch.setattr(couplings, "inverse", lambda v: (seen.setdefault("v", v), inverse(v))[1])
    loss = noisy_nll(flow, x, 0.1)
    v0, _ = norm.inverse(ic.inverse(x)[0])
    delta = seen["v"] - v0
    free = torch.zeros(ic.dim, dtype=torch.bool)
    free[flow.free_torsions] = True
    assert free.any() and (~free).any()
    assert delta[:, free].abs().max() == 0  # free torsions as they are
    torch.testing.assert_close(delta[:, ~free].std(0), torch.full((int((~free).sum()),), 0.1),
                               rtol=0.1, atol=0)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in couplings.parameters())


def test_the_loss_uses_noisy_frames_for_the_likelihood_and_exact_ones_for_the_variance():
    kind = _kind(0.1)
    x, u = kind.batch(3)
    parts = kind.loss((x, u), 3)
    torch.manual_seed(distributed.step_seed(kind.config.train.seed, 3))
    expected_nll = noisy_nll(kind.module, x, 0.1)
    lv = log_weight_variance(kind.module.log_prob(x), u)
    torch.testing.assert_close(parts["nll"], expected_nll)
    torch.testing.assert_close(parts["lv"], lv)
    torch.testing.assert_close(parts["loss"], expected_nll + 0.5 * lv)
    assert not torch.allclose(parts["nll"], -kind.module.log_prob(x).mean())


def test_negative_noise_is_one_line():
    with pytest.raises(BoltzflowError, match="internal.frame_noise") as err:
        parse_config({"model": "internal", "internal": {"frame_noise": -0.1}})
    assert len(str(err.value).splitlines()) == 1
