"""ESS, clipping, resampling and free energies against closed-form answers."""

from __future__ import annotations

import math

import pytest
import torch

import boltzflow as bf
from boltzflow.analysis import free_energy_difference
from boltzflow.sampling import (
    clip_log_weights,
    effective_sample_size,
    effective_sample_size_clipped,
    log_weights,
    resample_multinomial,
    resample_systematic,
)


def test_ess_gaussian_proposal_gaussian_target_closed_form():
    # q = N(0, s² I_d), p = N(0, I_d): ESS -> (E_q w)² / E_q w² = (sqrt(2s² - 1) / s²)^d.
    s, d, n = 1.5, 2, 400_000
    gen = torch.Generator().manual_seed(1)
    x = s * torch.randn(n, d, generator=gen, dtype=torch.float64)
    log_q = -0.5 * (x / s).pow(2).sum(-1) - d * math.log(s)
    u = 0.5 * x.pow(2).sum(-1) + 123.0  # an arbitrary offset must not matter
    ess = effective_sample_size(log_weights(u, log_q))
    expected = (math.sqrt(2 * s**2 - 1) / s**2) ** d
    assert ess == pytest.approx(expected, abs=0.01)


def test_ess_bounds_and_degenerate_cases():
    assert effective_sample_size(torch.zeros(7)) == pytest.approx(1.0)
    one_hot = torch.full((100,), -math.inf)
    one_hot[3] = 0.0
    assert effective_sample_size(one_hot) == pytest.approx(0.01)
    assert effective_sample_size(torch.full((5,), -math.inf)) == 0.0
    with pytest.raises(ValueError):
        effective_sample_size(torch.zeros(0))


def test_log_weights_non_finite_become_zero_weight():
    lw = log_weights(torch.tensor([1.0, math.nan, math.inf]), torch.tensor([0.0, 0.0, 0.0]))
    assert lw[0] == -1.0 and lw[1] == -math.inf and lw[2] == -math.inf


def test_clipping_caps_largest_weights_and_raises_ess():
    lw = torch.cat([torch.zeros(999), torch.tensor([10.0])])
    clipped = clip_log_weights(lw, fraction=0.001)
    assert clipped.max() == 0.0 and clipped.shape == lw.shape
    assert effective_sample_size_clipped(lw, 0.001) == pytest.approx(1.0)
    assert effective_sample_size(lw) < 0.05
    assert torch.equal(clip_log_weights(lw, 0.0), lw)


@pytest.mark.parametrize("resample", [resample_multinomial, resample_systematic])
def test_resampling_reproduces_weighted_mean(resample):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(50_000, generator=gen, dtype=torch.float64)
    # weights turn N(0, 1) into N(1, 1): w ∝ exp(x - 1/2)
    idx = resample(x - 0.5, 50_000, generator=gen)
    assert idx.min() >= 0 and idx.max() < len(x)
    assert x[idx].mean().item() == pytest.approx(1.0, abs=0.03)
    assert x[idx].std().item() == pytest.approx(1.0, abs=0.03)


def test_free_energy_difference_two_gaussian_basins():
    # target: 0.2·N(-3, 1) + 0.8·N(3, 1), proposal N(0, 4²): ΔF(B: x>0 vs A: x<0) = -log(0.8/0.2)
    # up to the tails crossing 0 (Φ(-3) terms, computed exactly below).
    gen = torch.Generator().manual_seed(2)
    x = 4 * torch.randn(200_000, generator=gen, dtype=torch.float64)
    log_p = torch.logaddexp(
        math.log(0.2) - 0.5 * (x + 3) ** 2, math.log(0.8) - 0.5 * (x - 3) ** 2
    )
    log_q = -0.5 * (x / 4) ** 2
    phi = 0.5 * (1 + math.erf(-3 / math.sqrt(2)))
    p_b = 0.2 * phi + 0.8 * (1 - phi)
    exact = -math.log(p_b / (1 - p_b))
    df = free_energy_difference(log_p - log_q, x < 0, x > 0, n_bootstrap=100)
    assert df.value == pytest.approx(exact, abs=3 * df.stderr + 1e-3)
    assert 0.001 < df.stderr < 0.05


def test_free_energy_difference_rejects_empty_region():
    with pytest.raises(ValueError, match="region B"):
        free_energy_difference(torch.zeros(4), torch.ones(4, dtype=bool), torch.zeros(4, dtype=bool))


def test_samples_roundtrip_and_system_check(tmp_path):
    s = bf.sampling.Samples.from_model(torch.randn(5, 2), torch.randn(5), torch.randn(5))
    s.save(tmp_path / "s.npz", system_id="double-well")
    back = bf.sampling.Samples.load(tmp_path / "s.npz", system_id="double-well")
    assert torch.equal(back.x, s.x) and torch.equal(back.log_w, s.log_w)
    with pytest.raises(bf.errors.BoltzflowError, match="from system 'double-well'"):
        bf.sampling.Samples.load(tmp_path / "s.npz", system_id="dw4")
