"""The contract every model kind keeps, checked the same way for each kind in ``KINDS``.

build → train a few steps (``runs.train``) → save → load (``runs.load_run``) → the loaded
flow's ``sample_and_log_prob`` agrees with its ``log_prob`` of the same samples → ``runs.evaluate``
writes ``metrics.json`` with the ESS as a fraction and as a count; and a run directory whose
checkpoint is of another kind is refused with one clear line.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from boltzflow import runs, systems
from boltzflow.errors import BoltzflowError
from boltzflow.models import KINDS, parse_config
from boltzflow.training import load_checkpoint, save_checkpoint

#: The tiny config of each kind: its system and sections (a few seconds of training).
CONFIGS = {
    "coupling": {
        "system": {"id": "double-well", "n_data": 500, "n_test": 100},
        "coupling": {"n_layers": 2, "hidden": [16], "kl_batch_size": 32},
    },
    # energy-only (reverse KL, w_nll 0): no MD needed; the normalization comes from the
    # minimized structure
    "internal": {
        "system": {"id": "aldp-vacuum"},
        "internal": {"n_layers": 2, "hidden": [16], "w_nll": 0.0, "kl_batch_size": 16},
    },
    "cnf": {
        "system": {"id": "dw4", "n_data": 500, "n_test": 100},
        "sample": {"n_nll": 50},
        "cnf": {"hidden": 16, "n_layers": 2, "solver_steps": 10, "amp": "none"},
    },
    "tbg": {
        "tbg": {"hidden": 16, "n_layers": 2, "frames_per_peptide": 4, "solver": "rk4",
                "solver_steps": 6},
        "train": {"batch_size": 8, "warmup": 0},
        "sample": {"n_samples": 16, "batch_size": 16},  # exact divergence: ~0.15 s a sample
    },
    "tbg-ic": {
        "tbg-ic": {"hidden": 16, "n_layers": 4, "attention_layers": 1, "heads": 2,
                   "frames_per_peptide": 4},
        "train": {"batch_size": 8, "warmup": 0},
    },
}
SHARED = {"train": {"steps": 3, "batch_size": 32, "checkpoint_every": 3},
          "sample": {"n_samples": 64}}

#: The system a kind's loaded model is sampled and evaluated on (tbg: a held-out peptide).
TARGETS = {"tbg": "dipeptide:AC", "tbg-ic": "dipeptide:AC"}

#: |log_prob(x) - log_q| allowed for the model's own samples, x and log_q from one forward pass.
#: Coupling flows are exact bijections, so only float32 round-off counts (~1e-4; the internal
#: flow's Cartesian log_q of 22 atoms sums ~60 log-derivatives: 1e-3). A CNF's log_q is
#: integrated forward and its log_prob backward by a fixed-step RK4 (6-10 steps here), so they
#: agree only up to the solver's error (measured ~1e-5 for these barely trained fields; a
#: trained field's is larger, hence 1e-2).
LOG_PROB_ATOL = {"coupling": 1e-4, "internal": 1e-3, "cnf": 1e-2, "tbg": 1e-2, "tbg-ic": 1e-3}


def _config(kind: str, dataset: Path | None) -> dict:
    data = {"model": kind, **{k: dict(v) for k, v in SHARED.items()}}
    for section, values in CONFIGS[kind].items():
        data[section] = {**data.get(section, {}), **values}
    if KINDS[kind].transferable:
        data["system"] = {"dataset": str(dataset)}
    return data


def test_every_kind_is_covered():
    assert set(CONFIGS) == set(KINDS) == set(LOG_PROB_ATOL)


@pytest.mark.parametrize("kind", list(KINDS))
def test_kind_contract(kind, tmp_path, request):
    dataset = request.getfixturevalue("tiny_dipeptides") if KINDS[kind].transferable else None
    config = parse_config(_config(kind, dataset))
    out = tmp_path / kind
    trained = runs.train(config, out, progress=False)
    assert trained.model.name == kind
    assert load_checkpoint(out / "checkpoint.pt")["metadata"]["kind"] == kind

    run = runs.load_run(out)
    assert run.config.to_dict() == config.to_dict()
    assert run.model.info["step"] == config.train.steps
    for name, value in trained.model.module.state_dict().items():  # saved and restored exactly
        torch.testing.assert_close(run.model.module.state_dict()[name], value.to(
            run.model.module.state_dict()[name]))

    system = systems.get(TARGETS[kind]) if kind in TARGETS else run.system
    flow = run.model.flow_for(system)
    with torch.no_grad():
        x, log_q = flow.sample_and_log_prob(8)
        assert x.shape == (8, *system.event_shape) and log_q.shape == (8,)
        assert torch.isfinite(log_q).all() and log_q.std() > 0.1  # no trivial agreement
        torch.testing.assert_close(flow.log_prob(x), log_q, atol=LOG_PROB_ATOL[kind], rtol=0)

    metrics = runs.evaluate(run, system=system if kind in TARGETS else None, plots=False)
    written = json.loads((run.dir_for(system) / "metrics.json").read_text())
    assert written["system"] == system.id and written["n_samples"] == config.sample.n_samples
    assert 0 <= written["ess"] <= 1
    assert written["ess_samples"] == pytest.approx(written["ess"] * written["n_samples"])
    assert metrics["ess_samples"] == pytest.approx(written["ess_samples"])

    # refinement: every kind with a one-pass log q refines (finite weights, the sample count
    # kept); the others say why not in one line
    from boltzflow.sampling.refine import RefineOptions

    options = RefineOptions(levels=2, pilot=16)
    target = system if kind in TARGETS else None
    if run.model.refine_unsupported is None:
        refined = runs.sample(run, 32, system=target, refine=options, progress=False)
        assert len(refined) == 32 and not torch.isnan(refined.log_w).any()
        assert torch.isfinite(refined.log_w).any()
        assert (run.dir_for(system) / runs.REFINE_NAME).exists()
    else:
        with pytest.raises(BoltzflowError, match="--refine is not available") as err:
            runs.sample(run, 4, system=target, refine=options, progress=False)
        assert len(str(err.value).splitlines()) == 1

    # the same run directory with a checkpoint of another kind: one clear line
    other = next(k for k in KINDS if k != kind)
    wrong = tmp_path / "wrong"
    shutil.copytree(out, wrong)
    state = load_checkpoint(wrong / "checkpoint.pt")
    state["metadata"]["kind"] = other
    save_checkpoint(wrong / "checkpoint.pt", state)
    with pytest.raises(BoltzflowError, match=f"is a '{other}' model") as err:
        runs.load_run(wrong)
    assert f"not the '{kind}' model" in str(err.value) and len(str(err.value).splitlines()) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kind", list(KINDS))
def test_kind_trains_samples_and_evaluates_on_cuda(kind, tmp_path, request):
    """``train.device: cuda`` end to end (tbg-ic with its energy term): the model trains and
    samples on the GPU, its log q is self-consistent there, the same checkpoint loaded on the
    CPU gives the same log q of the same samples, and evaluation and refinement run."""
    dataset = request.getfixturevalue("tiny_dipeptides") if KINDS[kind].transferable else None
    data = _config(kind, dataset)
    data["train"]["device"] = "cuda"
    if kind == "tbg-ic":  # the energy term too: the force field and the flow on the GPU
        data["tbg-ic"].update(w_kl=1.0, kl_peptides=2, kl_samples=4)
    config = parse_config(data)
    out = tmp_path / kind
    runs.train(config, out, progress=False)

    run = runs.load_run(out)
    assert next(run.model.module.parameters()).device.type == "cuda"
    system = systems.get(TARGETS[kind]) if kind in TARGETS else run.system
    flow = run.model.flow_for(system)
    with torch.no_grad():
        x, log_q = flow.sample_and_log_prob(8)
        assert x.device.type == "cuda" and log_q.device.type == "cuda"
        assert torch.isfinite(log_q).all() and log_q.std() > 0.1
        torch.testing.assert_close(flow.log_prob(x), log_q, atol=LOG_PROB_ATOL[kind], rtol=0)
        on_cpu = runs.load_run(out, changes={"train.device": "cpu"}).model.flow_for(system)
        torch.testing.assert_close(on_cpu.log_prob(x.cpu()), log_q.cpu(),
                                   atol=10 * LOG_PROB_ATOL[kind], rtol=0)

    metrics = runs.evaluate(run, system=system if kind in TARGETS else None, plots=False)
    # (a 3-step tbg draws no valid sample of the held-out peptide: ESS 0 on the CPU as well)
    assert metrics["n_samples"] == config.sample.n_samples
    assert 0 <= metrics["ess_samples"] <= config.sample.n_samples
    if run.model.refine_unsupported is None:
        from boltzflow.sampling.refine import RefineOptions

        refined = runs.sample(run, 32, system=system if kind in TARGETS else None,
                              refine=RefineOptions(levels=2, pilot=16), progress=False)
        assert len(refined) == 32 and torch.isfinite(refined.log_w).any()
