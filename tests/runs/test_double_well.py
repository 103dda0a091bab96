"""End to end on double-well through the run-directory workflow (``runs.train`` → ``sample`` →
``evaluate``): a flow trained with reverse KL + maximum likelihood is nearly exact, and its
reweighted free-energy difference matches quadrature of the exact density."""

from __future__ import annotations

import pytest
import torch

import boltzflow as bf
from boltzflow import runs
from boltzflow.analysis import free_energy_difference, free_energy_difference_quadrature
from boltzflow.models import parse_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    config = parse_config({
        "model": "coupling",
        "system": {"id": "double-well"},
        "train": {"steps": 500, "lr": 5e-3, "checkpoint_every": 500},
        "sample": {"n_samples": 10_000},
        "coupling": {"n_layers": 4, "hidden": [32, 32], "w_nll": 1.0, "w_kl": 1.0,
                     "kl_batch_size": 256},
    })
    run = runs.train(config, tmp_path_factory.mktemp("dw") / "run", progress=False)
    return runs.load_run(run.path)


def test_ess_and_free_energy_difference(trained):
    system = trained.system
    samples = runs.sample(trained, 10_000, seed=1, progress=False)
    ess = bf.sampling.effective_sample_size(samples.log_w)
    assert ess >= 0.8, f"ESS {ess:.3f} < 0.8"

    in_b = system.in_region_b(samples.x)
    df = free_energy_difference(samples.log_w, ~in_b, in_b)
    exact = free_energy_difference_quadrature(
        system.energy, system.bounds, lambda g: ~system.in_region_b(g), system.in_region_b
    )
    assert abs(exact) > 0.3, "the test needs an asymmetric double well"
    assert df.value == pytest.approx(exact, abs=0.05), f"ΔF {df} vs exact {exact:.3f}"
    # the run's evaluation reports the same numbers from the saved samples
    metrics = runs.evaluate(trained, plots=False)
    assert metrics["ess"] == pytest.approx(ess) and metrics["ess_samples"] == pytest.approx(
        ess * 10_000)
    assert metrics["dF_exact"] == pytest.approx(exact)
    assert metrics["dF_reweighted"] == pytest.approx(df.value)
    assert metrics["nll"] > 0  # on the run's held-out reference samples (data.npz)
    # training and held-out samples are independent draws here: the flow fits both alike
    assert abs(metrics["nll_gap"]) < 0.2
    assert metrics["nll_gap"] == pytest.approx(metrics["nll"] - metrics["nll_train"])


def test_nll_gap_measures_frames_seen_against_new_ones(trained, tmp_path):
    from boltzflow.analysis.evaluate import evaluate_samples

    system = trained.system
    samples = runs.sample(trained, 500, seed=2, progress=False)
    held_out = system.sample_reference(400, seed=5)

    def gap(train_frames):
        return evaluate_samples(trained.model, system, samples, tmp_path, held_out=held_out,
                                train_frames=train_frames, plots=False).metrics["nll_gap"]

    assert gap(held_out) == pytest.approx(0.0, abs=1e-6)
    # "training" frames the flow finds likelier than the held-out ones (its own mode's
    # neighbourhood) give a positive gap; frames off the distribution a negative one
    x, log_q = trained.model.flow_for(system).sample_and_log_prob(4000)
    assert gap(x[log_q.argsort(descending=True)[:400]].detach()) > 1.0
    assert gap(held_out + 3.0) < -1.0


def test_log_q_consistent_between_directions(trained):
    flow = trained.model.flow_for(trained.system)
    with torch.no_grad():
        x, log_q = flow.sample_and_log_prob(512)
        assert torch.allclose(flow.log_prob(x), log_q, atol=1e-3)
