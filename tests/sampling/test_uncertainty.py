"""Error bars that hold: the ESS interval on heavy-tailed weights, block errors of MD series."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from boltzflow.analysis.blocking import block_standard_error
from boltzflow.analysis.free_energy import free_energy_difference_blocked
from boltzflow.sampling import effective_sample_size_interval, largest_weight


def _heavy_tailed_log_w(s: float, n: int, gen: torch.Generator) -> torch.Tensor:
    """Log weights of N(0, 1) under proposal N(0, s²): ``x²/2 (1/s² − 1)`` (up to a constant)."""
    x = s * torch.randn(n, generator=gen, dtype=torch.float64)
    return 0.5 * x.square() * (1 / s**2 - 1)


def test_ess_interval_covers_heavy_tailed_truth_where_single_draws_scatter():
    # s = 0.8 > 1/√2: E w² is finite (true ESS √(2s² − 1)/s² = 0.827) but E w⁴ is not, so the
    # Kish ESS of one draw is skewed high and scatters; the interval must still cover it.
    s, n, repeats = 0.8, 2000, 60
    truth = math.sqrt(2 * s**2 - 1) / s**2
    gen = torch.Generator().manual_seed(0)
    draws, covered = [], 0
    for r in range(repeats):
        interval = effective_sample_size_interval(_heavy_tailed_log_w(s, n, gen), n_bootstrap=100,
                                                  seed=r)
        draws.append(interval.ess)
        covered += interval.low <= truth <= interval.high
        assert interval.low <= interval.ess <= interval.high
    draws = np.array(draws)
    assert covered / repeats >= 0.75
    assert np.mean(np.abs(draws - truth) > 0.03) > 0.3  # single draws miss by more than 0.03
    assert 0.2 < interval.tail_index < 0.6  # true Pareto index of w: 2 s² (1/s² − 1) / 2 = 0.36


@pytest.mark.parametrize("xi, sigma", [(0.3, 2.0), (0.7, 1.0), (-0.2, 1.0)])
def test_generalized_pareto_fit_recovers_shape_and_scale(xi, sigma):
    from boltzflow.sampling.reweight import _generalized_pareto_fit

    u = torch.rand(2000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    fitted_xi, fitted_sigma = _generalized_pareto_fit(sigma / xi * (u ** (-xi) - 1))
    assert fitted_xi == pytest.approx(xi, abs=0.08)
    assert fitted_sigma == pytest.approx(sigma, rel=0.15)


def _missing_mode_log_w(n: int, rng: np.random.Generator) -> np.ndarray:
    """Log weights in 5 dimensions of target ``0.97 N(0, 1) + 0.03 N(6, 1)`` under proposal
    ``0.995 N(0, 0.95²) + 0.005 N(6, 0.8²)``: a flow that under-populates a conformer."""
    d, mode = 5, 6.0

    def log_mixture(x, fractions, scales):
        parts = [math.log(f) - 0.5 * np.sum(((x - m) / s) ** 2, axis=1) - d * math.log(s)
                 for f, m, s in zip(fractions, (0.0, mode), scales)]
        return np.logaddexp(*parts)

    in_mode = rng.random(n) < 0.005
    x = rng.standard_normal((n, d))
    x[~in_mode] *= 0.95
    x[in_mode] = 0.8 * x[in_mode] + mode
    return log_mixture(x, (0.97, 0.03), (1.0, 1.0)) - log_mixture(x, (0.995, 0.005), (0.95, 0.8))


def test_ess_interval_covers_the_truth_when_the_proposal_under_populates_a_mode():
    # The few samples in the under-populated mode carry weights far above the body's: most
    # draws of 2,000 hold too few of them and their ESS sits high. A pure Pareto (Hill) tail
    # fitted to the largest weights redraws them too light and its interval lies above the
    # truth in 45 of these 60 draws; the generalized Pareto one in 6.
    rng = np.random.default_rng(5)
    big = np.concatenate([_missing_mode_log_w(500_000, rng) for _ in range(4)])
    w = np.exp(big - big.max())
    truth = w.sum() ** 2 / (len(w) * np.square(w).sum())
    repeats, covered, off = 60, 0, 0
    for r in range(repeats):
        interval = effective_sample_size_interval(
            torch.from_numpy(_missing_mode_log_w(2000, rng)), n_bootstrap=100, seed=r)
        covered += interval.low <= truth <= interval.high
        off += abs(interval.ess - truth) > 0.05
    assert off / repeats > 0.5  # single draws miss the truth by more than 0.05
    assert covered / repeats >= 0.75


def test_ess_interval_of_equal_weights_is_one_and_largest_weight():
    interval = effective_sample_size_interval(torch.zeros(100))
    assert (interval.ess, interval.low, interval.high) == pytest.approx((1.0, 1.0, 1.0))
    assert largest_weight(torch.tensor([0.0, math.log(3.0)])) == pytest.approx(0.75)
    assert effective_sample_size_interval(torch.full((5,), -math.inf)).high == 0.0


def _ar1(rho: float, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    e = rng.normal(size=n)
    x = np.empty(n)
    x[0] = e[0] / math.sqrt(1 - rho**2)
    for t in range(1, n):
        x[t] = rho * x[t - 1] + e[t]
    return x


def test_block_error_of_ar1_matches_the_exact_standard_error_where_bootstrap_does_not():
    rho, n = 0.9, 100_000
    x = torch.from_numpy(_ar1(rho, n, seed=3))
    # var(mean) of a stationary AR(1) with unit innovations: σ²/n · (1 + ρ)/(1 − ρ)
    exact = math.sqrt(1 / (1 - rho**2) / n * (1 + rho) / (1 - rho))
    block = block_standard_error(x)
    assert block.converged and block.stderr == pytest.approx(exact, rel=0.2)
    assert block.correlation_time == pytest.approx((1 + rho) / (1 - rho) / 2, rel=0.4)
    gen = torch.Generator().manual_seed(0)
    boot = torch.stack([x[torch.randint(n, (n,), generator=gen)].mean() for _ in range(100)])
    assert float(boot.std()) < exact / 3  # the naive bootstrap reports ~1/√19 of it


def test_blocked_free_energy_difference_of_a_two_state_chain():
    # a two-state Markov chain that stays put with probability 0.99: p(B) = 1/3 → ΔF = log 2
    rng = np.random.default_rng(1)
    stay_a, stay_b, n = 0.995, 0.99, 200_000
    state = np.empty(n, bool)
    state[0] = False
    flips = rng.random(n)
    for t in range(1, n):
        stay = stay_b if state[t - 1] else stay_a
        state[t] = state[t - 1] if flips[t] < stay else not state[t - 1]
    in_b = torch.from_numpy(state)
    df = free_energy_difference_blocked(~in_b, in_b)
    assert df.method == "block" and df.value == pytest.approx(math.log(2), abs=3 * df.stderr)
    # exact: var of the mean of 1[B] ≈ p(1−p)/n · (1 + λ)/(1 − λ), λ = 1 − 0.005 − 0.01
    lam = stay_a + stay_b - 1
    p = 1 / 3
    exact = math.sqrt(p * (1 - p) / n * (1 + lam) / (1 - lam)) / (p * (1 - p))
    assert df.stderr == pytest.approx(exact, rel=0.3)


def test_log_weight_spread_predicts_the_ess_of_gaussian_log_weights_and_ignores_clashes():
    from boltzflow.sampling import effective_sample_size, log_weight_spread

    gen = torch.Generator().manual_seed(3)
    for sigma in (0.5, 1.0, 1.5):
        log_w = sigma * torch.randn(200_000, generator=gen, dtype=torch.float64) - 40.0
        spread = log_weight_spread(log_w)
        assert abs(spread - sigma) < 0.02 * sigma + 0.01
        # the Kish ESS of many Gaussian log-weights tends to exp(-σ²)
        assert effective_sample_size(log_w) == pytest.approx(math.exp(-spread**2), rel=0.15)
    # clashes (weight 0 or -inf) below the median do not move it; one huge weight barely does
    base = torch.randn(10_000, generator=gen, dtype=torch.float64)
    clashed = base.clone()
    clashed[:100] = -math.inf
    clashed[100:200] = -1e4
    assert abs(log_weight_spread(clashed) - log_weight_spread(base)) < 0.05
    assert abs(log_weight_spread(torch.cat([base, torch.tensor([50.0])]))
               - log_weight_spread(base)) < 0.01
    assert math.isnan(log_weight_spread(torch.full((5,), -math.inf)))


def test_log_weight_spread_is_stable_where_the_ess_of_one_draw_scatters():
    # heavy-tailed weights (s = 0.75: E w² finite, E w⁴ not): the ESS of a draw of 2,000 scatters
    # far more, relative to its mean, than the spread does
    from boltzflow.sampling import effective_sample_size, log_weight_spread

    gen = torch.Generator().manual_seed(4)
    ess, spread = [], []
    for _ in range(40):
        log_w = _heavy_tailed_log_w(0.75, 2000, gen)
        ess.append(effective_sample_size(log_w))
        spread.append(log_weight_spread(log_w))
    cv = lambda v: float(np.std(v) / np.mean(v))  # noqa: E731
    assert cv(spread) < 0.5 * cv(ess)
