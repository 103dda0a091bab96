"""``model: cnf`` through the run-directory workflow and the CLI: train (flow matching) → sample
→ evaluate, resume, config errors, and alanine dipeptide with the mirror fix."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from cli_util import run_main

from boltzflow import runs
from boltzflow.analysis.validity import chirality_centers, chirality_signs, reference_chirality
from boltzflow.continuous import RK4, Dopri5, Euler, Hutchinson, Midpoint, path_length
from boltzflow.errors import BoltzflowError, ConfigError
from boltzflow.geometry import center
from boltzflow.models import config_with, override_config, parse_config
from boltzflow.models.cnf import make_divergence, make_solver, mean_path_length
from boltzflow.sampling import Samples
from boltzflow.training import load_checkpoint

TINY = {"system": {"n_data": 500, "n_test": 100}, "train": {"batch_size": 32},
        "cnf": {"hidden": 16, "n_layers": 2, "solver_steps": 8}}


def _config(tmp: Path, data: dict, name: str = "c.yaml") -> str:
    (tmp / name).write_text(yaml.safe_dump(data))
    return str(tmp / name)


def _max_diff(a: dict, b: dict) -> float:
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def test_cli_train_sample_evaluate_dw4(tmp_path, capsys):
    run = tmp_path / "run"
    code, out, err = run_main(
        capsys, "train", "--system", "dw4", "--model", "cnf", "--config", _config(tmp_path, TINY),
        "--steps", "20", "--out", str(run), "--no-progress",
    )
    assert code == 0, err
    state = load_checkpoint(run / "checkpoint.pt")
    meta = state["metadata"]
    assert (meta["kind"], meta["field"], meta["system"]) == ("cnf", "EGNN", "dw4")
    assert meta["scale"] > 0 and meta["n_types"] == 1 and state["step"] == 20
    with open(run / "train_log.csv") as f:
        rows = f.read().splitlines()
    assert rows[0].startswith("step,loss") and len(rows) == 3
    code, out, err = run_main(capsys, "sample", "--run", str(run), "-n", "150", "--no-progress")
    assert code == 0, err
    code, out, err = run_main(capsys, "evaluate", "--run", str(run))
    assert code == 0, err
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n_samples"] == 150 and 0 < metrics["ess"] <= 1
    assert metrics["ess_samples"] == pytest.approx(150 * metrics["ess"])
    assert np.isfinite(metrics["nll"]) and metrics["mean_path_length"] > 0
    assert "nll_train" not in metrics  # a second NLL would cost another ODE solve per frame
    assert "n_mirrored" not in metrics  # a toy has no chirality
    report = (run / "report.md").read_text()
    assert "continuous flow" in report and "mean integration path length" in report
    # log q of the samples (forward solve) equals the flow's log_prob of them (backward solve)
    loaded = runs.load_run(run)
    flow = loaded.model.flow_for(loaded.system)
    assert flow.event_shape == (4, 2)
    samples = Samples.load(run / "samples.npz", system_id="dw4")
    with torch.no_grad():
        log_q = flow.log_prob(samples.x[:64])
    assert torch.allclose(log_q, samples.log_q[:64], atol=1e-3)
    assert samples.log_q.std() > 0.1  # not a constant that would agree trivially
    # the path length in data units is the field's (in its units) times the scale
    cnf = loaded.model.cnf
    z0 = center(torch.randn(32, 4, 2, generator=torch.Generator().manual_seed(5)))
    expected = meta["scale"] * path_length(cnf.field, z0, context=cnf.context, solver=cnf.solver)
    assert mean_path_length(flow, n=32, seed=5) == pytest.approx(expected)
    # evaluating again re-evaluates the existing samples: the same (seeded) path length
    # (this was `boltzflow report`, now gone: `evaluate` writes the report)
    code, out, err = run_main(capsys, "evaluate", "--run", str(run))
    assert code == 0, err
    again = json.loads((run / "metrics.json").read_text())
    assert again["n_samples"] == 150  # the samples of `sample -n 150`, not new ones
    assert again["mean_path_length"] == pytest.approx(metrics["mean_path_length"], rel=1e-6)


def test_resumed_run_equals_straight_run(tmp_path):
    base = config_with(TINY, {
        "model": "cnf", "system.id": "dw4", "train.lr_schedule": "constant", "train.lr": 0.01,
        "train.checkpoint_every": 3, "cnf.amp": "none", "sample.n_samples": 10,
    })
    straight = runs.train(override_config(base, {"train.steps": 8}), tmp_path / "straight",
                          progress=False)
    runs.train(override_config(base, {"train.steps": 4}), tmp_path / "resumed", progress=False)
    first = load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")["model"]
    # lengthening a finished run continues it (train.steps may change on resume)
    resumed = runs.train(override_config(base, {"train.steps": 8}), tmp_path / "resumed",
                         progress=False)
    assert load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")["step"] == 8
    assert yaml.safe_load((tmp_path / "resumed" / "config.yaml").read_text())["train"]["steps"] == 8
    after = resumed.model.module.state_dict()
    assert _max_diff(first, after) > 1e-4  # it trained on
    assert _max_diff(straight.model.module.state_dict(), after) < 1e-6
    with open(tmp_path / "resumed" / "train_log.csv") as f:
        assert [int(r.split(",")[0]) for r in f.read().splitlines()[1:]] == [4, 8]


def test_model_of_checkpoint_and_config_must_agree(tmp_path):
    cfg = parse_config({
        "model": "cnf", "system": {"id": "double-well", "n_data": 200, "n_test": 50},
        "train": {"steps": 3, "batch_size": 16}, "cnf": {"hidden": 8, "n_layers": 1},
    })
    run = runs.train(cfg, tmp_path / "cnf", progress=False)
    assert type(run.model.cnf.field).__name__ == "MLPField"  # not particles
    samples = runs.sample(run, 64, progress=False)
    with torch.no_grad():
        assert torch.allclose(run.model.module.log_prob(samples.x), samples.log_q, atol=1e-3)
    metrics = runs.evaluate(run, plots=False)
    assert metrics["mean_path_length"] > 0 and "dF_exact" in metrics and "n_nll" not in metrics
    path = tmp_path / "cnf" / "config.yaml"
    text = path.read_text()
    coupling = config_with(yaml.safe_load(text), {"model": "coupling"}).to_dict()
    path.write_text(yaml.safe_dump(coupling, sort_keys=False))
    with pytest.raises(BoltzflowError, match="is a 'cnf' model of 'double-well', not the "
                       "'coupling' model"):
        runs.load_run(tmp_path / "cnf")
    # another architecture in the config than in the checkpoint
    path.write_text(text.replace("hidden: 8", "hidden: 9"))
    with pytest.raises(BoltzflowError, match="does not match its config") as exc:
        runs.load_run(tmp_path / "cnf")
    assert len(str(exc.value).splitlines()) == 1
    spline = parse_config({
        "system": {"id": "double-well", "n_data": 200, "n_test": 50},
        "train": {"steps": 2, "batch_size": 16},
        "coupling": {"n_layers": 2, "hidden": [8], "w_kl": 0.0},
    })
    runs.train(spline, tmp_path / "spline", progress=False)
    # a run directory whose config.yaml lacks keys (written before they existed) still resumes:
    # they take their defaults
    old = yaml.safe_load((tmp_path / "spline" / "config.yaml").read_text())
    del old["sample"]
    for key in ("u_high", "n_bins", "bound", "kl_start"):
        del old["coupling"][key]
    (tmp_path / "spline" / "config.yaml").write_text(yaml.safe_dump(old, sort_keys=False))
    runs.train(spline, tmp_path / "spline", progress=False)
    cnf = config_with(yaml.safe_load((tmp_path / "spline" / "config.yaml").read_text()),
                      {"model": "cnf"}).to_dict()
    (tmp_path / "spline" / "config.yaml").write_text(yaml.safe_dump(cnf, sort_keys=False))
    with pytest.raises(BoltzflowError, match="is a 'coupling' model.*not the 'cnf' model"):
        runs.load_run(tmp_path / "spline")


def test_config_defaults_and_errors():
    assert parse_config({}).params.w_kl == 1.0
    assert parse_config({"coupling": {"transform": "spline"}}).params.w_kl == 1.0
    cnf = parse_config({"model": "cnf"})
    assert "w_kl" not in cnf.to_dict()["cnf"]  # flow matching has no KL term to weigh
    assert parse_config(cnf.to_dict()) == cnf
    cases = [
        ({"cnf": {"w_kl": 0.5}}, "unknown key 'w_kl' in section 'cnf'"),
        ({"cnf": {"kl_start": 10}}, "unknown key 'kl_start' in section 'cnf'"),
        ({"cnf": {"w_nll": 0.0}}, "unknown key 'w_nll' in section 'cnf'"),
        ({"train": {"dtype": "float64"}}, "'cnf.amp' must be 'none' with train.dtype float64"),
        ({"cnf": {"pairing": "hungarian"}}, "'cnf.pairing' must be one of auto, equivariant-ot"),
        ({"cnf": {"solver": "rk45"}}, "'cnf.solver' must be one of rk4, dopri5"),
        ({"cnf": {"divergence": "skilling"}}, "'cnf.divergence' must be one of exact"),
        ({"cnf": {"solver_steps": 0}}, "'cnf.solver_steps' must be > 0"),
        ({"cnf": {"sigma": -0.1}}, "'cnf.sigma' must be >= 0"),
        ({"cnf": {"ot_block_size": -1}}, "'cnf.ot_block_size' must be >= 0"),
        ({"cnf": {"hidden": 2.5}}, "'cnf.hidden' must be an integer"),
    ]
    for data, message in cases:
        with pytest.raises(ConfigError) as exc:
            parse_config({"model": "cnf", **data})
        assert message in str(exc.value) and len(str(exc.value).splitlines()) == 1
    with pytest.raises(ConfigError, match="'coupling.n_layers' must be an integer >= 2"):
        parse_config({"coupling": {"n_layers": 1}})
    # the valid float64 combination
    parse_config({"model": "cnf", "train": {"dtype": "float64"}, "cnf": {"amp": "none"}})
    for name, cls, n_steps in (("rk4", RK4, 3), ("midpoint", Midpoint, 3), ("euler", Euler, 3),
                               ("dopri5", Dopri5, None)):
        params = parse_config({"model": "cnf", "cnf": {"solver": name, "solver_steps": 3}}).params
        made = make_solver(params)
        assert type(made) is cls and getattr(made, "n_steps", None) == n_steps
    params = parse_config({"model": "cnf", "cnf": {"divergence": "hutchinson"}}).params
    assert type(make_divergence(params)) is Hutchinson


def test_cli_errors_are_one_line(tmp_path, capsys):
    cases = [
        (["--system", "dw4", "--model", "cnf", "--config",
          _config(tmp_path, {"cnf": {"w_kl": 1.0}}, "kl.yaml")],
         "unknown key 'w_kl' in section 'cnf'"),
        (["--system", "dw4", "--model", "glow"],
         "unknown model 'glow'; known models: coupling, internal, cnf, tbg"),
        (["--system", "double-well", "--model", "cnf", "--config",
          _config(tmp_path, {"cnf": {"pairing": "equivariant-ot"},
                             "system": {"n_data": 100, "n_test": 20}}, "p.yaml")],
         "pairing 'equivariant-ot' needs a particle system"),
    ]
    for args, message in cases:
        code, _, err = run_main(capsys, "train", *args, "--out", str(tmp_path / "r"),
                                "--no-progress")
        assert code == 2 and message in err, err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def aldp_dataset(tmp_path_factory) -> Path:
    """40 frames of alanine dipeptide (implicit solvent) from 2 ps of MD (well under a second)."""
    from boltzflow import systems
    from boltzflow.md import simulate

    out = tmp_path_factory.mktemp("aldp") / "md"
    simulate(systems.get("aldp-implicit"), out, ns=0.002, frame_interval_ps=0.05,
             equilibration_ps=1.0, progress=False)
    return out


def test_aldp_cnf_with_mirror_fix(tmp_path, capsys, aldp_dataset):
    run = tmp_path / "aldp"
    config = _config(tmp_path, {"system": {"n_test": 8}, "train": {"batch_size": 16},
                                "sample": {"n_samples": 24},
                                "cnf": {"hidden": 16, "n_layers": 2, "solver_steps": 3}})
    code, _, err = run_main(
        capsys, "train", "--system", "aldp-implicit", "--data", str(aldp_dataset), "--model",
        "cnf", "--config", config, "--steps", "4", "--out", str(run), "--no-progress",
    )
    assert code == 0, err
    meta = load_checkpoint(run / "checkpoint.pt")["metadata"]
    assert meta["field"] == "EGNN" and meta["n_types"] == 16  # methyl H exchangeable only
    code, _, err = run_main(capsys, "evaluate", "--run", str(run), "--no-plots")
    assert code == 0, err
    metrics = json.loads((run / "metrics.json").read_text())
    loaded = runs.load_run(run)
    raw = Samples.load(run / "samples.npz")  # the model's own samples, before the fix
    assert len(raw) == metrics["n_samples"] == 24
    signs = chirality_signs(raw.x, chirality_centers(loaded.system.topology))
    n_d = int((signs == -reference_chirality(loaded.system).to(signs)).all(-1).sum())
    assert metrics["n_mirrored"] == n_d
    assert 0 < n_d < 24  # an untrained E(3)-equivariant flow makes both enantiomers
    assert metrics["n_invalid_chirality"] == 0  # one Cα: every D-form is fixed by mirroring
    for key in ("fraction_valid", "ess", "nll", "mean_path_length", "dF_phi_md"):
        assert key in metrics, key
    # mirroring keeps log q: the flow is E(3)-equivariant, its density reflection-invariant
    with torch.no_grad():
        flow = loaded.model.module
        lq, lq_mirror = flow.log_prob(raw.x[:6]), flow.log_prob(-raw.x[:6])
    assert torch.allclose(lq, lq_mirror, atol=1e-3)
