"""Run directories written by boltzflow before the one-model interface (config version 1: a flat
``config.yaml``, checkpoints of kind ``coupling-flow``) still load, evaluate and resume."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
import yaml

from boltzflow import runs
from boltzflow.errors import BoltzflowError
from boltzflow.models import config_with, override_config
from boltzflow.training import load_checkpoint, save_checkpoint

#: ``config.yaml`` as version 1 wrote it for ``TrainConfig(system="double-well", n_layers=2,
#: hidden=[8], steps=2, n_data=200, n_test=50, batch_size=16, w_kl=0.0, n_samples=100)``:
#: every kind's keys in one flat mapping.
FLAT_RUN_CONFIG = {
    "system": "double-well", "forcefield": "", "solvent": "", "temperature": 0.0, "data": "",
    "model": "spline", "n_layers": 2, "hidden": [8], "n_bins": 8, "bound": 5.0, "steps": 2,
    "batch_size": 16, "kl_batch_size": 256, "lr": 0.001, "lr_schedule": "cosine", "warmup": 0,
    "clip_grad": 100.0, "w_nll": 1.0, "w_kl": 0.0, "kl_start": 0, "u_high": 1000.0,
    "n_data": 200, "n_test": 50, "n_samples": 100, "clip_fraction": 0.002, "seed": 0,
    "checkpoint_every": 500, "device": "cpu", "dtype": "float32", "cnf_hidden": 64,
    "cnf_layers": 4, "pairing": "auto", "ot_block_size": 64, "sigma": 0.01, "solver": "rk4",
    "solver_steps": 20, "divergence": "exact", "amp": "bf16", "ode_batch_size": 128,
    "n_nll_cnf": 1000,
}


@pytest.fixture
def old_run(tmp_path):
    """A version-1 run directory: flat config, checkpoint metadata of version 1.

    The weights come from a version-2 run of the same architecture (the coupling flow's
    ``state_dict`` keys did not change); config and metadata are rewritten as version 1 wrote
    them.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        config = config_with(FLAT_RUN_CONFIG, {})
    run = tmp_path / "old"
    runs.train(config, run, progress=False)
    (run / "config.yaml").write_text(yaml.safe_dump(FLAT_RUN_CONFIG, sort_keys=False))
    state = load_checkpoint(run / "checkpoint.pt")
    state["metadata"] = {"system": "double-well", "model": "spline", "kind": "coupling-flow"}
    save_checkpoint(run / "checkpoint.pt", state)
    return run


def test_old_flat_run_directory_loads_and_evaluates(old_run):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an old run is not the user's mistake: no warning
        run = runs.load_run(old_run)
    assert (run.config.model, run.config.params.transform) == ("coupling", "spline")
    assert (run.config.params.n_layers, run.config.params.hidden, run.config.params.w_kl) == (
        2, [8], 0.0)
    assert (run.config.train.steps, run.config.sample.n_samples) == (2, 100)
    assert run.model.info["step"] == 2 and run.system.id == "double-well"
    flow = run.model.flow_for(run.system)
    with torch.no_grad():
        x, log_q = flow.sample_and_log_prob(32)
        assert torch.allclose(flow.log_prob(x), log_q, atol=1e-4)
    metrics = runs.evaluate(run, plots=False)
    assert metrics["n_samples"] == 100 and "ess_samples" in metrics
    assert json.loads((old_run / "metrics.json").read_text())["system"] == "double-well"


def test_old_flat_run_directory_resumes_in_the_new_format(old_run):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        config = runs.load_run(old_run).config
    runs.train(override_config(config, {"train.steps": 4}), old_run, progress=False)
    state = load_checkpoint(old_run / "checkpoint.pt")
    assert state["step"] == 4 and state["metadata"]["kind"] == "coupling"
    written = yaml.safe_load((old_run / "config.yaml").read_text())
    assert written["version"] == 2 and written["coupling"]["n_layers"] == 2


def test_old_checkpoint_under_another_kind_is_refused(old_run):
    # a version-1 coupling checkpoint is a coupling or internal model, never a CNF
    config = yaml.safe_load((old_run / "config.yaml").read_text())
    config["model"] = "cnf"
    (old_run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    with pytest.raises(BoltzflowError, match="is a 'coupling-flow' model of 'double-well', not "
                       "the 'cnf' model") as exc:
        runs.load_run(old_run)
    assert len(str(exc.value).splitlines()) == 1
