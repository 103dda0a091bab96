"""Config validation: one clear message naming the key and what is allowed."""

from __future__ import annotations

import pytest

from boltzflow.config import TrainConfig, load_config
from boltzflow.errors import ConfigError


def test_defaults_are_valid_and_roundtrip():
    cfg = TrainConfig()
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_typo_names_key_and_suggests():
    with pytest.raises(ConfigError, match=r"unknown config key 'stpes'.*did you mean 'steps'"):
        TrainConfig.from_dict({"stpes": 10})


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("steps", "many", "'steps' must be an integer"),
        ("steps", -1, "'steps' must be an integer >= 0"),
        ("lr", 0.0, "'lr' must be a positive number"),
        ("model", "glow", "'model' must be one of spline, affine"),
        ("hidden", [64, -1], "'hidden' must be a non-empty list"),
        ("clip_fraction", 1.5, "'clip_fraction' must be a number in"),
        ("device", "tpu", "'device' must be one of cpu, cuda"),
        ("batch_size", True, "'batch_size' must be an integer"),
    ],
)
def test_bad_values_are_named(key, value, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_dict({key: value})


def test_w_nll_and_w_kl_cannot_both_be_zero():
    with pytest.raises(ConfigError, match="w_nll"):
        TrainConfig(w_nll=0.0, w_kl=0.0)


def test_toml_and_yaml_files(tmp_path):
    (tmp_path / "a.toml").write_text('system = "dw4"\nsteps = 5\nhidden = [8, 8]\nlr = 1\n')
    (tmp_path / "b.yaml").write_text("system: lj13\nsteps: 7\n")
    a, b = load_config(tmp_path / "a.toml"), load_config(tmp_path / "b.yaml")
    assert (a.system, a.steps, a.hidden, a.lr) == ("dw4", 5, [8, 8], 1.0)
    assert (b.system, b.steps) == ("lj13", 7)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.toml", "steps = = 3", "cannot parse"),
        ("bad.yaml", "steps: [1, 2", "cannot parse"),
        ("bad.json", "{}", "must end in .toml"),
        ("list.yaml", "- 1\n- 2\n", "must be a mapping"),
    ],
)
def test_unreadable_files(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / name)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
