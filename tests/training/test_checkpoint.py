"""Checkpoints hold only tensors and plain data: round trip, refusal of code, clear save errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from boltzflow.errors import BoltzflowError
from boltzflow.training import load_checkpoint, make_scheduler, save_checkpoint


class _WritesMarker:
    """Unpickling this runs ``os.system``: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _trained_state() -> dict:
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    scheduler = make_scheduler(optimizer, "cosine", steps=10, warmup=2)
    for _ in range(2):
        optimizer.zero_grad()
        model(torch.randn(5, 3)).square().sum().backward()
        optimizer.step()
        scheduler.step()
    return {
        "step": 2,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": torch.get_rng_state(),
        "elapsed": 1.5,
        "metadata": {
            "kind": "cnf",
            "event_shape": [4, 3],
            "nested": {"sequences": ["AA", "NY"], "pairs": [(1, 2.5), (None, True)]},
        },
    }


def test_realistic_state_round_trips(tmp_path):
    state = _trained_state()
    save_checkpoint(tmp_path / "c.pt", state)
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert loaded["metadata"] == state["metadata"]
    assert loaded["scheduler"] == state["scheduler"]
    for name, value in state["model"].items():
        torch.testing.assert_close(loaded["model"][name], value)
    torch.testing.assert_close(loaded["rng"], state["rng"])
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    model.load_state_dict(loaded["model"])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    optimizer.load_state_dict(loaded["optimizer"])
    assert optimizer.state_dict()["param_groups"] == state["optimizer"]["param_groups"]


def test_numpy_and_paths_are_stored_as_plain_data(tmp_path):
    save_checkpoint(
        tmp_path / "c.pt",
        {"scale": np.float32(0.5), "n": np.int64(3), "x": np.arange(3.0), "out": tmp_path},
    )
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert type(loaded["scale"]) is float and loaded["scale"] == 0.5
    assert type(loaded["n"]) is int and loaded["n"] == 3
    torch.testing.assert_close(loaded["x"], torch.arange(3.0, dtype=torch.float64))
    assert loaded["out"] == str(tmp_path)


def test_checkpoint_that_runs_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    torch.save({"version": 1, "step": 1, "metadata": {"x": _WritesMarker(marker)}}, path)
    with pytest.raises(BoltzflowError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "holds objects other than tensors and plain data" in message
    assert "refused for safety" in message and str(path) in message
    assert "\n" not in message
    assert not marker.exists()


class _Settings:
    """A plain class instance: harmless, but not plain data."""


def test_checkpoint_holding_a_class_instance_is_refused(tmp_path):
    path = tmp_path / "old.pt"
    torch.save({"version": 1, "step": 1, "config": _Settings()}, path)
    with pytest.raises(BoltzflowError, match="refused for safety"):
        load_checkpoint(path)


def test_old_checkpoint_of_plain_data_still_loads(tmp_path):
    path = tmp_path / "old.pt"
    torch.save({"version": 1, "step": 4, "model": torch.nn.Linear(2, 2).state_dict()}, path)
    assert load_checkpoint(path)["step"] == 4


def test_save_refuses_an_object_and_names_its_key(tmp_path):
    with pytest.raises(ValueError, match=r"metadata\.hooks\[1\]"):
        save_checkpoint(tmp_path / "c.pt", {"metadata": {"hooks": [1, print]}})
    with pytest.raises(ValueError, match=r"metadata\.config"):
        save_checkpoint(tmp_path / "c.pt", {"metadata": {"config": object()}})
    assert not list(tmp_path.iterdir()), "nothing is written when saving is refused"
