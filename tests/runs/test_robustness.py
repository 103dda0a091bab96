"""Bad input and hostile conditions: one clear error, nothing lost, nothing half-written."""

from __future__ import annotations

import errno
import math

import pytest
import torch

import boltzflow as bf
from boltzflow import runs
from boltzflow.config import RunConfig
from boltzflow.errors import BoltzflowError, TrainingDiverged
from boltzflow.io import write_atomic
from boltzflow.models import parse_config
from boltzflow.training import combined_loss, fit, load_checkpoint


def small(steps: int, **train: int) -> RunConfig:
    """A tiny coupling run of double-well trained by likelihood alone."""
    return parse_config({
        "system": {"id": "double-well", "n_data": 500, "n_test": 200},
        "train": {"steps": steps, **train}, "sample": {"n_samples": 200},
        "coupling": {"n_layers": 2, "hidden": [8], "w_kl": 0.0},
    })


def test_disk_full_keeps_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "checkpoint.pt"
    write_atomic(target, lambda f: f.write(b"good"))

    def full(f):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(BoltzflowError, match="No space left on device; free some disk space"):
        write_atomic(target, full)
    assert target.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_disk_full_during_training_is_one_clear_error(tmp_path, monkeypatch):
    cfg = small(6, checkpoint_every=3)
    real_save = torch.save
    calls = {"n": 0}

    def save(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the second checkpoint hits a full disk
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(BoltzflowError, match="cannot write .*checkpoint.pt: No space left"):
        runs.train(cfg, tmp_path / "run", progress=False)
    monkeypatch.setattr(torch, "save", real_save)
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 3  # intact
    runs.train(cfg, tmp_path / "run", progress=False)  # resumes once there is space
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 6


def test_read_only_output_directory():
    # /proc refuses new directories even for root: a real read-only location
    with pytest.raises(BoltzflowError, match="cannot create output directory /proc/boltzflow-run"):
        runs.train(small(1), "/proc/boltzflow-run", progress=False)


def test_checkpoint_of_another_model_is_refused(tmp_path):
    run = tmp_path / "run"
    runs.train(small(2), run, progress=False)
    cfg = (run / "config.yaml").read_text()
    assert cfg.count("n_layers: 2") == 1
    (run / "config.yaml").write_text(cfg.replace("n_layers: 2", "n_layers: 3"))
    with pytest.raises(BoltzflowError, match="does not match its config") as exc:
        runs.load_run(run)
    assert len(str(exc.value).splitlines()) == 1
    state = load_checkpoint(run / "checkpoint.pt")
    state["metadata"]["system"] = "dw4"
    torch.save(state, run / "checkpoint.pt")
    with pytest.raises(BoltzflowError, match="is a 'coupling' model of 'dw4', not the 'coupling' "
                       "model of 'double-well'"):
        runs.load_run(run)


def test_samples_file_from_another_system_is_refused(tmp_path):
    run = tmp_path / "run"
    loaded = runs.train(small(2), run, progress=False)
    bf.sampling.Samples.from_model(torch.zeros(3, 8, 2), torch.zeros(3), torch.zeros(3)).save(
        run / runs.SAMPLES_NAME, system_id="dw4"
    )
    with pytest.raises(BoltzflowError, match="are from system 'dw4', not 'double-well'"):
        runs.evaluate(loaded, plots=False)


class SometimesNaN(bf.Energy):
    """A quadratic energy that is NaN for configurations with x0 > 1 (a 'broken' region)."""

    def __init__(self):
        super().__init__((2,))

    def _energy(self, x):
        u = 0.5 * x.pow(2).sum(-1)
        return torch.where(x[:, 0] > 1.0, torch.full_like(u, math.nan), u)


def test_nan_energies_mid_training_do_not_poison_reverse_kl():
    flow = bf.Flow(bf.StandardNormal((2,)), bf.transforms.coupling_flow(2, n_layers=2), (2,))
    energy = SometimesNaN()
    rows = fit(flow, lambda s: combined_loss(flow, energy, None, w_nll=0.0, w_kl=1.0,
                                             n_samples=128), steps=30, progress=False)
    assert all(math.isfinite(r["loss"]) for r in rows)


class AlwaysNaN(SometimesNaN):
    def _energy(self, x):
        return x.sum(-1) * math.nan


def test_all_nan_energies_stop_training_with_a_clear_message(tmp_path):
    flow = bf.Flow(bf.StandardNormal((2,)), bf.transforms.coupling_flow(2, n_layers=2), (2,))

    def loss_fn(step):
        x, log_q = flow.sample_and_log_prob(16)
        return {"loss": (AlwaysNaN().energy(x) + log_q).mean()}

    with pytest.raises(TrainingDiverged, match="loss is nan at step 0"):
        fit(flow, loss_fn, steps=5, out_dir=tmp_path, progress=False)
