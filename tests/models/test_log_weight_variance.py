"""The log-weight-variance term (``w_lv``) of the coupling kinds: the batch carries the data's
energies, the loss and the training log carry the term, bad energies stop it with one line."""

from __future__ import annotations

import csv

import pytest
import torch

from boltzflow import runs
from boltzflow.errors import BoltzflowError
from boltzflow.models import parse_config


def _config(**coupling):
    return parse_config({
        "model": "coupling",
        "system": {"id": "double-well", "n_data": 300, "n_test": 50},
        "coupling": {"n_layers": 2, "hidden": [16], "w_kl": 0.0, **coupling},
        "train": {"steps": 4, "batch_size": 32, "checkpoint_every": 4},
        "sample": {"n_samples": 64},
    })


def test_batch_carries_the_data_energies_and_the_log_the_term(tmp_path):
    run = runs.train(_config(w_lv=1.0, kl_start=2), tmp_path, progress=False)
    model = run.model
    assert model.describe().endswith("loss = 1·NLL + 0·reverse KL + 1·Var(log q + u)")
    x, u = model.batch(0)
    assert x.shape == (32, 2) and u.shape == (32,)
    torch.testing.assert_close(u, model.system.energy.energy(x))
    rows = list(csv.DictReader((tmp_path / "train_log.csv").open()))
    assert "lv" in rows[0]
    parts = model.loss(model.batch(1), 1)  # before kl_start: likelihood only
    assert "nll" in parts and parts["lv"].isnan()
    parts = model.loss(model.batch(2), 2)
    assert parts["lv"] > 0
    torch.testing.assert_close(parts["loss"], parts["nll"] + parts["lv"])


def test_no_energies_computed_without_the_term(tmp_path):
    run = runs.train(_config(), tmp_path, progress=False)
    assert isinstance(run.model.batch(0), torch.Tensor) and run.model.data_u is None
    assert run.model.describe().endswith("loss = 1·NLL + 0·reverse KL")  # as before w_lv


def test_non_finite_data_energy_is_one_line(tmp_path):
    model = runs.train(_config(w_lv=1.0), tmp_path, progress=False).model
    model.data[3] = float("nan")
    model.data_u = None
    for _ in range(2):  # and again: the bad energies are not kept
        with pytest.raises(BoltzflowError, match=r"1 of \d+ training configurations have a "
                                                 "non-finite energy.*coupling.w_lv: 0") as err:
            model.batch(0)
        assert len(str(err.value).splitlines()) == 1
