"""Config validation: one clear message naming the key and what is allowed; the flat (version 1)
format still reads, with a deprecation warning."""

from __future__ import annotations

import warnings

import pytest

from boltzflow.config import RunConfig
from boltzflow.errors import ConfigError
from boltzflow.models import KINDS, config_with, load_config, override_config, parse_config


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert len(message.splitlines()) == 1, message
    return message


@pytest.mark.parametrize("model", [*KINDS, "auto"])
def test_defaults_are_valid_and_roundtrip(model):
    cfg = parse_config({"model": model})
    assert isinstance(cfg, RunConfig) and cfg.model in KINDS
    assert parse_config(cfg.to_dict()) == cfg
    assert cfg.to_dict()["version"] == 2 and cfg.model in cfg.to_dict()


def test_auto_model_and_kind_defaults():
    assert parse_config({}).model == "coupling"
    assert parse_config({"system": {"id": "aldp-implicit"}}).model == "internal"
    assert parse_config({"system": {"id": "dipeptide:NY"}}).model == "internal"
    assert parse_config({"system": {"dataset": "dipeptides"}}).model == "tbg"
    cnf = parse_config({"model": "cnf"})
    assert (cnf.sample.batch_size, cnf.sample.n_nll) == (128, 1000)  # the kind's defaults
    assert parse_config({"model": "cnf", "sample": {"batch_size": 7}}).sample.batch_size == 7
    assert parse_config({"model": "tbg"}).train.lr == 5e-3
    assert parse_config({}).params.w_kl == 1.0


def test_typo_names_key_and_suggests():
    with pytest.raises(ConfigError, match=r"unknown key 'stpes' in section 'train'") as exc:
        parse_config({"train": {"stpes": 10}})
    assert "did you mean 'steps'?" in _one_line(exc)


def test_unknown_section_names_it_and_suggests():
    with pytest.raises(ConfigError, match=r"unknown section 'trian'") as exc:
        parse_config({"train": {}, "trian": {"steps": 3}})
    assert "did you mean 'train'?" in _one_line(exc)
    # another kind's section: named, with the sections this kind allows
    with pytest.raises(ConfigError, match=r"unknown section 'cnf'.* for model 'coupling'") as exc:
        parse_config({"model": "coupling", "cnf": {"hidden": 8}})
    assert "allowed sections: coupling, sample, system, train" in _one_line(exc)
    # a key of another kind in this kind's section
    with pytest.raises(ConfigError, match=r"unknown key 'transform' in section 'internal'"):
        parse_config({"model": "internal", "internal": {"transform": "affine"}})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"train": {"steps": "many"}}, "'train.steps' must be an integer"),
        ({"train": {"steps": -1}}, "'train.steps' must be >= 0"),
        ({"train": {"lr": 0.0}}, "'train.lr' must be > 0"),
        ({"model": "glow"}, "unknown model 'glow'; known models: coupling, internal, cnf, tbg"),
        ({"model": "cupling"}, "did you mean 'coupling'?"),
        ({"coupling": {"hidden": [64, -1]}}, "'coupling.hidden' must be a non-empty list"),
        ({"sample": {"clip_fraction": 1.5}}, "'sample.clip_fraction' must be in [0, 1)"),
        ({"train": {"device": "tpu"}}, "'train.device' must be one of cpu, cuda"),
        ({"train": {"batch_size": True}}, "'train.batch_size' must be an integer"),
        ({"coupling": {"transform": "glow"}}, "'coupling.transform' must be one of spline, affine"),
        ({"coupling": {"n_layers": 1}}, "'coupling.n_layers' must be an integer >= 2"),
        ({"system": {"n_data": 0}}, "'system.n_data' must be > 0"),
        ({"train": "fast"}, "section 'train' of config must be a mapping of keys to values"),
    ],
)
def test_bad_values_are_named(data, message):
    with pytest.raises(ConfigError) as exc:
        parse_config(data)
    assert message in _one_line(exc)


def test_old_model_names_point_to_the_new_ones():
    with pytest.raises(ConfigError, match="'spline' is now called coupling or internal"):
        parse_config({"model": "spline"})
    with pytest.raises(ConfigError, match=r"'affine' is now called coupling \(transform: affine"):
        parse_config({"model": "affine", "train": {}})


def test_w_nll_and_w_kl_cannot_both_be_zero():
    with pytest.raises(ConfigError, match="coupling.w_nll"):
        parse_config({"coupling": {"w_nll": 0.0, "w_kl": 0.0}})
    with pytest.raises(ConfigError, match="'internal.kl_start' must be 0 when w_nll is 0"):
        parse_config({"model": "internal", "internal": {"w_nll": 0.0, "kl_start": 5}})


def test_toml_and_yaml_files(tmp_path):
    (tmp_path / "a.toml").write_text(
        '[system]\nid = "dw4"\n[train]\nsteps = 5\nlr = 1\n[coupling]\nhidden = [8, 8]\n'
    )
    (tmp_path / "b.yaml").write_text("system: {id: lj13}\ntrain: {steps: 7}\n")
    a, b = load_config(tmp_path / "a.toml"), load_config(tmp_path / "b.yaml")
    assert (a.system.id, a.train.steps, a.params.hidden, a.train.lr) == ("dw4", 5, [8, 8], 1.0)
    assert isinstance(a.train.lr, float)
    assert (b.system.id, b.train.steps, b.model) == ("lj13", 7, "coupling")


def test_old_flat_config_file_still_loads_with_a_deprecation_warning(tmp_path):
    (tmp_path / "old.yaml").write_text(
        "system: dw4\nmodel: affine\nsteps: 5\nhidden: [8, 8]\nn_layers: 3\nw_kl: 0.0\n"
        "batch_size: 64\nn_samples: 300\ncnf_hidden: 32\n"  # version 1 held every kind's keys
    )
    with pytest.warns(DeprecationWarning, match="flat .*read it as model: coupling"):
        cfg = load_config(tmp_path / "old.yaml")
    assert (cfg.model, cfg.system.id, cfg.train.steps, cfg.train.batch_size) == (
        "coupling", "dw4", 5, 64)
    assert (cfg.params.transform, cfg.params.hidden, cfg.params.n_layers, cfg.params.w_kl) == (
        "affine", [8, 8], 3, 0.0)
    assert cfg.sample.n_samples == 300
    (tmp_path / "cnf.toml").write_text(
        'model = "cnf"\nsystem = "dw4"\ncnf_hidden = 16\ncnf_layers = 2\nn_layers = 9\n'
        'ode_batch_size = 32\nn_nll_cnf = 10\nsolver = "midpoint"\n'
    )
    with pytest.warns(DeprecationWarning):
        cnf = load_config(tmp_path / "cnf.toml")
    assert (cnf.model, cnf.params.hidden, cnf.params.n_layers, cnf.params.solver) == (
        "cnf", 16, 2, "midpoint")  # n_layers was the coupling flow's: dropped
    assert (cnf.sample.batch_size, cnf.sample.n_nll) == (32, 10)
    with pytest.warns(DeprecationWarning):  # a molecule's spline model is now internal
        assert parse_config({"system": "aldp-implicit", "steps": 3}).model == "internal"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a nested config warns about nothing
        parse_config(cnf.to_dict())


def test_old_flat_config_with_a_typo_is_one_line():
    with pytest.raises(ConfigError, match="unknown key 'stpes'") as exc:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            parse_config({"system": "dw4", "stpes": 3})
    assert "did you mean 'steps'?" in _one_line(exc)


def test_changes_by_dotted_key():
    cfg = config_with({"train": {"steps": 3}}, {"train.lr": 0.5, "train.seed": None,
                                                "system.id": "aldp-implicit"})
    assert (cfg.train.steps, cfg.train.lr, cfg.train.seed, cfg.model) == (3, 0.5, 0, "internal")
    switched = config_with(cfg.to_dict(), {"model": "cnf"})
    assert switched.model == "cnf" and switched.train.steps == 3
    assert override_config(cfg, {"internal.n_layers": 4}).params.n_layers == 4
    with pytest.raises(ConfigError, match="'internal.n_layers' must be an integer >= 2"):
        override_config(cfg, {"internal.n_layers": 1})


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
