"""Flow matching: the conditional path, pairings (independent, OT, equivariant OT), training."""

from __future__ import annotations

import itertools

import pytest
import torch

from boltzflow import systems
from boltzflow.continuous import EGNN, RK4, path_length
from boltzflow.distributions import MeanFreeNormal
from boltzflow.geometry import center
from boltzflow.testing import _random_orthogonal
from boltzflow.training import (
    EquivariantOT,
    IndependentPairing,
    LinearPath,
    MinibatchOT,
    align_pairs,
    flow_matching_loss,
    transport_cost,
    velocity_loss,
)


@pytest.fixture(scope="module")
def dw4_data():
    return systems.get("dw4").sample_reference(320, seed=0)


def test_linear_path_interpolates_and_targets_the_displacement():
    x0, x1 = center(torch.randn(5, 4, 2)), center(torch.randn(5, 4, 2))
    path = LinearPath()
    xt, ut = path(x0, x1, torch.zeros(5))
    torch.testing.assert_close(xt, x0)
    torch.testing.assert_close(ut, x1 - x0)
    xt, _ = path(x0, x1, torch.ones(5))
    torch.testing.assert_close(xt, x1)
    t = torch.rand(5)
    xt, _ = LinearPath(sigma=0.1)(x0, x1, t)
    mid = (1 - t[:, None, None]) * x0 + t[:, None, None] * x1
    assert 0 < (xt - mid).abs().max() < 1.0
    assert xt.sum(1).abs().max() < 1e-5  # the noise is mean-free
    with pytest.raises(ValueError, match="t: \\[B\\]"):
        path(x0, x1, torch.rand(4))


def test_flow_matching_loss_vanishes_for_the_true_field_of_a_translation():
    """With every pair displaced by the same ``c`` the conditional field ``v = c`` is exact."""
    c = torch.tensor([1.0, -2.0])

    def field(t, x, context=None):
        return c.expand_as(x)

    x0 = torch.randn(8, 2)
    assert flow_matching_loss(field, x0, x0 + c, torch.rand(8)) < 1e-10
    assert flow_matching_loss(field, x0, x0 - c, torch.rand(8)) > 0



def test_velocity_loss_ignores_padding_and_reduces_as_documented():
    g = torch.Generator().manual_seed(0)
    v, ut = torch.randn(2, 4, 3, 3, generator=g).unbind(0)  # [B=4, N=3, 3] each
    # the per-configuration sum, averaged over configurations (also for flat [B, D])
    per_config = (v - ut).square().sum((1, 2))
    torch.testing.assert_close(velocity_loss(v, ut), per_config.mean(), rtol=0, atol=0)
    torch.testing.assert_close(velocity_loss(v.flatten(1), ut.flatten(1)), per_config.mean())
    # padding: molecule 0 has 2 real atoms, the others 3; garbage on padding changes nothing
    mask = torch.ones(4, 3, dtype=torch.bool)
    mask[0, 2] = False
    garbage_v, garbage_u = v.clone(), ut.clone()
    garbage_v[0, 2], garbage_u[0, 2] = 1e6, -1e6
    real = per_config - (v[0, 2] - ut[0, 2]).square().sum() * torch.tensor([1.0, 0, 0, 0])
    torch.testing.assert_close(velocity_loss(garbage_v, garbage_u, mask), real.mean())
    summed = velocity_loss(garbage_v, garbage_u, mask, reduction="sum")
    torch.testing.assert_close(summed, real.sum())
    # a bfloat16 prediction (autocast) is compared in the target's precision
    half = velocity_loss(v.bfloat16(), ut)
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, velocity_loss(v.bfloat16().float(), ut), rtol=0, atol=0)
    with pytest.raises(ValueError, match="mask"):
        velocity_loss(v, ut, mask[:, :2])
    with pytest.raises(ValueError, match="reduction"):
        velocity_loss(v, ut, reduction="max")


def test_minibatch_ot_is_the_optimal_assignment():
    x0, x1 = torch.randn(6, 3, 2), torch.randn(6, 3, 2)
    paired, same = MinibatchOT()(x0, x1)
    assert same is x1
    assert sorted(map(tuple, paired.flatten(1).tolist())) == sorted(
        map(tuple, x0.flatten(1).tolist())
    )
    best = min(
        float(transport_cost(x0[list(p)], x1).sum()) for p in itertools.permutations(range(6))
    )
    assert float(transport_cost(paired, x1).sum()) == pytest.approx(best, rel=1e-6)


@pytest.mark.parametrize("d", [2, 3])
def test_align_pairs_undoes_a_permutation_of_identical_atoms_and_a_rotation(d):
    types = torch.tensor([0, 0, 0, 1, 2, 2])
    x1 = center(torch.randn(4, 6, d))
    perm = torch.tensor([2, 0, 1, 3, 5, 4])  # only within types
    assert transport_cost(align_pairs(x1[:, perm], x1, types, rotate=False), x1).max() < 1e-10
    gen = torch.Generator().manual_seed(0)
    q = _random_orthogonal(d, proper=True, generator=gen, dtype=x1.dtype)
    unique = torch.arange(6)
    assert transport_cost(align_pairs(x1 @ q, x1, unique), x1).max() < 1e-8
    # never exchanges atoms of different types: the lone type-1 atom stays where it is
    cross = torch.tensor([3, 1, 2, 0, 4, 5])
    x0 = x1[:, cross]
    aligned = align_pairs(x0, x1, types, rotate=False)
    torch.testing.assert_close(aligned[:, 3], x0[:, 3])
    torch.testing.assert_close(aligned[:, 4:], x1[:, 4:])
    for b in range(len(x1)):
        got = sorted(map(tuple, aligned[b, :3].tolist()))
        assert got == sorted(map(tuple, x0[b, :3].tolist()))


def _pairwise_distances(x):
    return torch.cdist(x, x).flatten(1).sort(-1).values


def test_equivariant_ot_lowers_the_transport_cost_on_dw4(dw4_data):
    prior = MeanFreeNormal(4, 2)
    costs = {"independent": [], "ot": [], "equivariant": []}
    for batch in dw4_data.split(64)[:3]:
        x0 = prior.sample(len(batch))
        for name, pairing in [
            ("independent", IndependentPairing()),
            ("ot", MinibatchOT()),
            ("equivariant", EquivariantOT()),
        ]:
            paired, x1 = pairing(x0, batch)
            costs[name].append(float(transport_cost(paired, x1).mean()))
        # each paired prior sample is a rotated/permuted prior sample: same distance set
        assert torch.allclose(
            _pairwise_distances(paired).sort(0).values,
            _pairwise_distances(x0).sort(0).values,
            atol=1e-4,
        )
    mean = {k: sum(v) / len(v) for k, v in costs.items()}
    assert mean["ot"] <= mean["independent"]
    assert mean["equivariant"] < 0.7 * mean["ot"], mean


def test_blocked_equivariant_ot_pairs_each_block_on_its_own(dw4_data):
    batch = dw4_data[:48]
    x0 = MeanFreeNormal(4, 2).sample(48)
    blocked = EquivariantOT(block_size=16)
    paired, x1 = blocked(x0, batch)
    assert torch.allclose(x1, center(batch))  # data order kept
    for k in range(3):  # block k is exactly the full pairing of block k alone
        sl = slice(16 * k, 16 * (k + 1))
        alone, _ = EquivariantOT()(x0[sl], batch[sl])
        assert torch.equal(paired[sl], alone)
    # fewer candidates, still far cheaper transport than independent pairs
    full = float(transport_cost(EquivariantOT()(x0, batch)[0], x1).mean())
    cost = float(transport_cost(paired, x1).mean())
    independent = float(transport_cost(center(x0), x1).mean())
    assert full <= cost + 1e-6 and cost < 0.7 * independent


def test_short_flow_matching_training_on_dw4_reduces_the_loss(dw4_data):
    torch.manual_seed(0)
    field = EGNN(2, hidden=32, n_layers=3)
    prior = MeanFreeNormal(4, 2)
    pairing = EquivariantOT()
    opt = torch.optim.Adam(field.parameters(), lr=3e-3)
    train, val = dw4_data[:256], dw4_data[256:]
    x0_val, x1_val = pairing(prior.sample(len(val)), val)
    t_val = torch.rand(len(val))

    def val_loss() -> float:
        with torch.no_grad():
            return float(flow_matching_loss(field, x0_val, x1_val, t_val))

    before = val_loss()
    length_before = path_length(field, prior.sample(64), solver=RK4(5))
    for _ in range(120):
        x1 = train[torch.randint(len(train), (64,))]
        x0, x1 = pairing(prior.sample(64), x1)
        loss = flow_matching_loss(field, x0, x1, torch.rand(64), path=LinearPath(0.01))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = val_loss()
    assert after < 0.6 * before, (before, after)
    # A trained field moves prior samples about the data distance; untrained it barely moves.
    assert path_length(field, prior.sample(64), solver=RK4(5)) > 2 * length_before
