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

from boltzflow import cnf_pipeline, pipeline
from boltzflow.analysis.validity import chirality_centers, chirality_signs, reference_chirality
from boltzflow.config import TrainConfig
from boltzflow.continuous import RK4, Dopri5, Euler, Hutchinson, Midpoint, path_length
from boltzflow.errors import BoltzflowError, ConfigError
from boltzflow.geometry import center
from boltzflow.sampling import Samples
from boltzflow.training import load_checkpoint

TINY = ("cnf_hidden: 16\ncnf_layers: 2\nn_data: 500\nn_test: 100\nbatch_size: 32\n"
        "solver_steps: 8\n")




def _config(tmp: Path, text: str, name: str = "c.yaml") -> str:
    (tmp / name).write_text(text)
    return str(tmp / name)


def _set_steps(run: Path, steps: int) -> None:
    """Lengthen a finished run (as a user would to continue it)."""
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["steps"] = steps
    (run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


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
    assert (meta["kind"], meta["model"], meta["field"], meta["system"]) == ("cnf", "cnf", "EGNN", "dw4")
    assert meta["scale"] > 0 and meta["event_shape"] == [4, 2] and state["step"] == 20
    with open(run / "train_log.csv") as f:
        rows = f.read().splitlines()
    assert rows[0].startswith("step,loss") and len(rows) == 3
    code, out, err = run_main(capsys, "sample", "--run", str(run), "-n", "150", "--no-progress")
    assert code == 0, err
    code, out, err = run_main(capsys, "evaluate", "--run", str(run))
    assert code == 0, err
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n_samples"] == 150 and 0 < metrics["ess"] <= 1
    assert np.isfinite(metrics["nll"]) and metrics["mean_path_length"] > 0
    assert "n_mirrored" not in metrics  # a toy has no chirality
    report = (run / "report.md").read_text()
    assert "continuous flow" in report and "mean integration path length" in report
    # log q of the samples (forward solve) equals the flow's log_prob of them (backward solve)
    loaded = pipeline.load_run(run)
    samples = Samples.load(run / "samples.npz", system_id="dw4")
    with torch.no_grad():
        log_q = loaded.flow.log_prob(samples.x[:64])
    assert torch.allclose(log_q, samples.log_q[:64], atol=1e-3)
    assert samples.log_q.std() > 0.1  # not a constant that would agree trivially
    # the path length in data units is the field's (in its units) times the scale
    cnf = cnf_pipeline.continuous_part(loaded.flow)
    z0 = center(torch.randn(32, 4, 2, generator=torch.Generator().manual_seed(5)))
    expected = meta["scale"] * path_length(cnf.field, z0, context=cnf.context, solver=cnf.solver)
    assert cnf_pipeline.mean_path_length(loaded.flow, n=32, seed=5) == pytest.approx(expected)
    # `report` re-evaluates the existing samples: the same (seeded) path length
    code, out, err = run_main(capsys, "report", "--run", str(run))
    assert code == 0, err
    again = json.loads((run / "metrics.json").read_text())
    assert again["mean_path_length"] == pytest.approx(metrics["mean_path_length"], rel=1e-6)


def test_resumed_run_equals_straight_run(tmp_path):
    base = TrainConfig.from_dict(yaml.safe_load(TINY)).replace(
        system="dw4", model="cnf", lr_schedule="constant", lr=0.01, checkpoint_every=3,
        amp="none", n_samples=10,
    )
    straight = pipeline.train(base.replace(steps=8), tmp_path / "straight", progress=False)
    pipeline.train(base.replace(steps=4), tmp_path / "resumed", progress=False)
    first = load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")["model"]
    _set_steps(tmp_path / "resumed", 8)
    resumed = pipeline.train(base.replace(steps=8), tmp_path / "resumed", progress=False)
    assert load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")["step"] == 8
    assert _max_diff(first, resumed.flow.state_dict()) > 1e-4  # it trained on
    assert _max_diff(straight.flow.state_dict(), resumed.flow.state_dict()) < 1e-6
    with open(tmp_path / "resumed" / "train_log.csv") as f:
        assert [int(r.split(",")[0]) for r in f.read().splitlines()[1:]] == [4, 8]


def test_model_of_checkpoint_and_config_must_agree(tmp_path):
    cfg = TrainConfig(system="double-well", model="cnf", cnf_hidden=8, cnf_layers=1, steps=3,
                      n_data=200, n_test=50, batch_size=16)
    run = pipeline.train(cfg, tmp_path / "cnf", progress=False)
    assert type(run.flow.bijection.bijections[0].field).__name__ == "MLPField"  # not particles
    samples = pipeline.sample(run, 64, progress=False)
    with torch.no_grad():
        assert torch.allclose(run.flow.log_prob(samples.x), samples.log_q, atol=1e-3)
    metrics = pipeline.evaluate(run, plots=False)
    assert metrics["mean_path_length"] > 0 and "dF_exact" in metrics and "n_nll" not in metrics
    text = (tmp_path / "cnf" / "config.yaml").read_text()
    (tmp_path / "cnf" / "config.yaml").write_text(text.replace("model: cnf", "model: spline"))
    with pytest.raises(BoltzflowError, match="is for 'cnf' on 'double-well', not a coupling flow"):
        pipeline.load_run(tmp_path / "cnf")
    (tmp_path / "cnf" / "config.yaml").write_text(text.replace("cnf_hidden: 8", "cnf_hidden: 9"))
    with pytest.raises(BoltzflowError, match="cnf_hidden=8 but its config says 9"):
        pipeline.load_run(tmp_path / "cnf")
    coupling = TrainConfig(system="double-well", n_layers=2, hidden=[8], steps=2, n_data=200,
                           n_test=50, batch_size=16, w_kl=0.0)
    pipeline.train(coupling, tmp_path / "spline", progress=False)
    # a run directory written before the CNF keys existed still resumes (they take defaults)
    old = yaml.safe_load((tmp_path / "spline" / "config.yaml").read_text())
    for key in ("cnf_hidden", "cnf_layers", "pairing", "sigma", "solver", "solver_steps",
                "divergence", "amp", "ode_batch_size", "n_nll_cnf", "ot_block_size"):
        del old[key]
    (tmp_path / "spline" / "config.yaml").write_text(yaml.safe_dump(old, sort_keys=False))
    pipeline.train(coupling, tmp_path / "spline", progress=False)
    text = (tmp_path / "spline" / "config.yaml").read_text()
    (tmp_path / "spline" / "config.yaml").write_text(text.replace("model: spline", "model: cnf"))
    with pytest.raises(BoltzflowError, match="is for 'coupling-flow'.*not a CNF"):
        pipeline.load_run(tmp_path / "spline")


def test_config_defaults_and_errors():
    assert TrainConfig().w_kl == 1.0 and TrainConfig(model="spline").w_kl == 1.0
    cnf = TrainConfig(model="cnf")
    assert cnf.w_kl == 0.0 and TrainConfig.from_dict(cnf.to_dict()) == cnf
    cases = [
        (dict(model="cnf", w_kl=0.5), "'w_kl' must be 0 for model 'cnf'"),
        (dict(model="cnf", kl_start=10), "'kl_start' must be 0 for model 'cnf'"),
        (dict(model="cnf", dtype="float64"), "'amp' must be 'none' with dtype float64"),
        (dict(model="cnf", pairing="hungarian"), "'pairing' must be one of auto, equivariant-ot"),
        (dict(model="cnf", solver="rk45"), "'solver' must be one of rk4, dopri5"),
        (dict(model="cnf", divergence="skilling"), "'divergence' must be one of exact"),
        (dict(model="cnf", solver_steps=0), "'solver_steps' must be a positive integer"),
        (dict(model="cnf", sigma=-0.1), "'sigma' must be a number >= 0"),
        (dict(model="cnf", ot_block_size=-1), "'ot_block_size' must be an integer >= 0"),
        (dict(model="cnf", cnf_hidden=2.5), "'cnf_hidden' must be an integer"),
        (dict(model="cnf", w_nll=0.0), "'w_nll' must be > 0 when w_kl is 0"),
        (dict(model="spline", n_layers=1), "'n_layers' must be an integer >= 2"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ConfigError, match=message):
            TrainConfig.from_dict(kwargs)
    TrainConfig(model="cnf", dtype="float64", amp="none")  # the valid float64 combination
    for name, cls, n_steps in (("rk4", RK4, 3), ("midpoint", Midpoint, 3), ("euler", Euler, 3),
                               ("dopri5", Dopri5, None)):
        made = cnf_pipeline.solver(TrainConfig(model="cnf", solver=name, solver_steps=3))
        assert type(made) is cls and getattr(made, "n_steps", None) == n_steps
    assert type(cnf_pipeline.divergence(TrainConfig(divergence="hutchinson"))) is Hutchinson


def test_cli_errors_are_one_line(tmp_path, capsys):
    cases = [
        (["--system", "dw4", "--model", "cnf", "--config",
          _config(tmp_path, "w_kl: 1.0\n", "kl.yaml")], "'w_kl' must be 0 for model 'cnf'"),
        (["--system", "dw4", "--model", "glow"], "'model' must be one of spline, affine, cnf"),
        (["--system", "double-well", "--model", "cnf", "--config",
          _config(tmp_path, "pairing: equivariant-ot\nn_data: 100\nn_test: 20\n", "p.yaml")],
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
    config = _config(tmp_path, "cnf_hidden: 16\ncnf_layers: 2\nn_test: 8\nbatch_size: 16\n"
                               "solver_steps: 3\nn_samples: 24\n")
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
    loaded = pipeline.load_run(run)
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
        lq, lq_mirror = loaded.flow.log_prob(raw.x[:6]), loaded.flow.log_prob(-raw.x[:6])
    assert torch.allclose(lq, lq_mirror, atol=1e-3)
