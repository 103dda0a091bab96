"""AIS and SMC from a flow to its target: unbiased log Z, ESS that grows with the levels, ΔF of
the double well from a poor flow, a MALA kernel that leaves the latent intermediate density
invariant (Jacobian and periodic coordinates included), and bad input."""

from __future__ import annotations

import math

import pytest
import torch

from boltzflow import systems
from boltzflow.analysis.free_energy import (
    free_energy_difference,
    free_energy_difference_quadrature,
)
from boltzflow.distributions import StandardNormal
from boltzflow.distributions.torus import ProductBase
from boltzflow.energies.base import Energy
from boltzflow.errors import BoltzflowError
from boltzflow.flow import Flow
from boltzflow.sampling.refine import (
    LatentGeometry,
    LatentTarget,
    RefineOptions,
    _mala,
    log_pi,
    refine,
)
from boltzflow.transforms import Chain, Normalization, coupling_flow


class Quadratic(Energy):
    """``u = |x|² / 2``: the standard normal, ``Z = (2π)^{d/2}``."""

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x.pow(2).flatten(1).sum(-1)


class Ring(Energy):
    """``u = x₀² / 2 − 2 cos(x₁ − 1)`` on ``ℝ × circle``."""

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x[:, 0] ** 2 - 2.0 * torch.cos(x[:, 1] - 1.0)


def scaled_normal(scale: float, dim: int) -> Flow:
    """The flow ``x = scale · z``: ``q = N(0, scale²)``."""
    norm = Normalization(dim)
    norm.log_scale.fill_(math.log(scale))
    return Flow(StandardNormal((dim,)), norm, (dim,))


def test_ais_log_z_is_unbiased_and_ess_grows_with_the_levels():
    # q = N(0, 1.6² I) for the target exp(-|x|²/2) in 10 dimensions: log Z = 5 log 2π
    flow, energy, truth = scaled_normal(1.6, 10), Quadratic((10,)), 5 * math.log(2 * math.pi)
    ess = []
    for levels in (1, 5, 20):
        info = refine(flow, energy, 3000, RefineOptions(levels=levels, seed=levels)).info
        assert abs(info["log_Z"] - truth) < 4 * info["log_Z_stderr"] + 1e-3, (levels, info)
        assert info["energy_evaluations_per_sample"] == 1 + 2 * levels
        ess.append(info["ess"])
    assert info["ess_before"] < 0.15  # plain reweighting: ESS ≈ 0.10
    assert ess[0] < ess[1] < ess[2] and ess[2] > 0.45
    # SMC resamples when the ESS drops and still estimates log Z
    smc = refine(scaled_normal(3.0, 10), energy, 2000,
                 RefineOptions(method="smc", levels=10, seed=3)).info
    assert smc["n_resamplings"] >= 1 and 1 <= smc["n_lineages"] <= 2000
    assert abs(smc["log_Z"] - truth) < 0.3


def test_double_well_free_energy_from_a_poor_flow():
    system = systems.get("double-well")
    flow = scaled_normal(1.8, 2)  # a broad Gaussian: plain reweighting keeps a few per cent
    result = refine(flow, system.energy, 6000, RefineOptions(levels=30, seed=1))
    in_b = system.in_region_b(result.samples.x)
    df = free_energy_difference(result.samples.log_w, ~in_b, in_b)
    exact = free_energy_difference_quadrature(
        system.energy, system.bounds, lambda g: ~system.in_region_b(g), system.in_region_b)
    assert abs(df.value - exact) < 0.05 and df.stderr < 0.05
    assert result.info["ess"] > 3 * result.info["ess_before"]


def _chain_moments(flow: Flow, energy: Energy, beta: float, n: int, steps: int) -> torch.Tensor:
    """``E[x₀], E[x₀²], E[cos x₁], E[sin x₁]`` (x in data space) after ``steps`` MALA moves at
    fixed ``β`` from exact latent samples of ``π_β`` (drawn by importance resampling)."""
    target, geometry = LatentTarget(flow, energy), LatentGeometry(flow)
    gen = torch.Generator().manual_seed(0)
    z = flow.base.sample(20 * n)
    state = target(z)
    idx = torch.multinomial(torch.softmax(beta * state["log_w"], 0), n, replacement=True,
                            generator=gen)
    z, state = z[idx], {k: v[idx] for k, v in state.items()}
    scale = geometry.scale(z)
    for _ in range(steps):
        z, state, _ = _mala(target, geometry, z, state, beta, 0.8, scale, gen)
    x = state["x"].double()
    return torch.stack([x[:, 0].mean(), x[:, 0].pow(2).mean(), x[:, 1].cos().mean(),
                        x[:, 1].sin().mean()])


def _quadrature_moments(flow: Flow, energy: Energy, beta: float) -> torch.Tensor:
    """The same moments of ``π_β(x) ∝ q(x)^{1−β} exp(−β u(x))`` on a fine grid."""
    a = torch.linspace(-6, 6, 601, dtype=torch.float64)
    b = torch.linspace(-math.pi, math.pi, 401, dtype=torch.float64)[:-1]
    grid = torch.cartesian_prod(a, b)
    with torch.no_grad():
        log_q = flow.log_prob(grid.float()).double()
    log_p = (1 - beta) * log_q - beta * energy.energy(grid)
    w = torch.softmax(log_p, 0)
    return torch.stack([(w * grid[:, 0]).sum(), (w * grid[:, 0] ** 2).sum(),
                        (w * grid[:, 1].cos()).sum(), (w * grid[:, 1].sin()).sum()])


def test_mala_leaves_the_latent_intermediate_density_invariant():
    # a nonlinear flow on ℝ × circle (random spline couplings, circular on x₁): the chain runs
    # in latent space, so its target must carry the flow's Jacobian to give π_β in data space
    torch.manual_seed(3)
    couplings = coupling_flow(2, n_layers=2, hidden=(16,), n_bins=6, circular=[1])
    with torch.no_grad():
        for p in couplings.parameters():
            p.add_(0.4 * torch.randn_like(p))
    flow = Flow(ProductBase(2, circular=[1]), Chain([couplings]), (2,))
    energy = Ring((2,))
    beta = 0.6
    expected = _quadrature_moments(flow, energy, beta)
    moved = _chain_moments(flow, energy, beta, 4000, steps=30)
    assert torch.allclose(moved, expected, atol=0.06), (moved, expected)
    # the exact-sample start agrees too, so the check has the power to see a wrong kernel
    start = _chain_moments(flow, energy, beta, 4000, steps=0)
    assert torch.allclose(start, expected, atol=0.06)
    wrong = _chain_moments(flow, energy, 1.0, 4000, steps=30)  # a different β is told apart
    assert (wrong - expected).abs().max() > 0.1


def test_non_finite_energies_drop_the_particle_not_the_result():
    class Wall(Energy):  # infinite energy for x₀ > 2.5: a clash region
        def _energy(self, x: torch.Tensor) -> torch.Tensor:
            u = 0.5 * x.pow(2).sum(-1)
            return torch.where(x[:, 0] > 2.5, torch.full_like(u, math.inf), u)

    result = refine(scaled_normal(1.5, 2), Wall((2,)), 2000, RefineOptions(levels=5, seed=0))
    log_w = result.samples.log_w
    assert not torch.isnan(log_w).any() and result.info["n_dropped"] == int(
        torch.isinf(log_w).sum()) > 0
    assert math.isfinite(result.info["log_Z"]) and result.info["ess"] > 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"levels": 0}, "--levels must be at least 1, got 0"),
        ({"step_size": -0.1}, "--step-size must be positive"),
        ({"method": "hmc"}, "--refine must be one of ais, smc"),
    ],
)
def test_bad_options_are_one_line(options, message):
    with pytest.raises(BoltzflowError, match=message):
        RefineOptions(**options)


def test_log_pi_is_the_prior_at_beta_zero_and_minus_inf_for_dead_particles():
    state = {"log_base": torch.tensor([-1.0, -2.0], dtype=torch.float64),
             "log_w": torch.tensor([3.0, -math.inf], dtype=torch.float64)}
    assert log_pi(state, 0.0).tolist() == [-1.0, -math.inf]
    assert log_pi(state, 0.5).tolist() == [0.5, -math.inf]


def test_cli_refines_a_run_and_reports_before_and_after(tmp_path, capsys):
    import json

    from cli_util import run_main

    run = tmp_path / "dw"
    code, _, err = run_main(capsys, "train", "--system", "double-well", "--steps", "30",
                            "--out", str(run), "--no-progress")
    assert code == 0, err
    code, out, err = run_main(capsys, "sample", "--run", str(run), "-n", "500", "--refine", "ais",
                              "--levels", "4", "--no-progress")
    assert code == 0, err
    assert "AIS × 4 levels: ESS" in out and "9 energy evaluations per sample" in out
    info = json.loads((run / "refine.json").read_text())
    assert len(info["acceptance_per_level"]) == 4 and info["n_samples"] == 500
    code, out, err = run_main(capsys, "evaluate", "--run", str(run), "--no-plots")
    assert code == 0, err
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["refine_ess"] == pytest.approx(metrics["ess"])
    assert metrics["refine_ess_before"] > 0 and "refine_log_Z_stderr" in metrics
    # plain sampling afterwards removes the stale refine.json
    code, _, err = run_main(capsys, "sample", "--run", str(run), "-n", "100", "--no-progress")
    assert code == 0 and not (run / "refine.json").exists()
    # bad input and a CNF are one line each
    code, _, err = run_main(capsys, "sample", "--run", str(run), "--refine", "ais", "--levels", "0")
    assert code == 2 and "--levels must be at least 1" in err
    cnf = tmp_path / "cnf"
    code, _, err = run_main(capsys, "train", "--system", "dw4", "--model", "cnf", "--steps", "2",
                            "--out", str(cnf), "--no-progress")
    assert code == 0, err
    code, _, err = run_main(capsys, "sample", "--run", str(cnf), "-n", "4", "--refine", "smc")
    assert code == 2 and "not available for a 'cnf' model" in err and len(err.splitlines()) == 1
