"""The command line: help everywhere, clean one-line errors, and train → sample → evaluate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_util import run_main

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "boltzflow", *args], capture_output=True, text=True, env=ENV,
        cwd=cwd, timeout=300,
    )




@pytest.mark.parametrize(
    "command",
    [[], ["systems"], ["train"], ["sample"], ["evaluate"], ["demo"], ["simulate"], ["info"],
     ["dataset"], ["dataset", "dipeptides"]],
)
def test_every_command_has_help(capsys, command):
    code, out, _ = run_main(capsys, *command, "--help")
    assert code == 0 and "Usage" in out


def test_systems_lists_toys(capsys):
    code, out, _ = run_main(capsys, "systems")
    assert code == 0
    for sid in ("double-well", "mueller-brown", "many-well-32", "gmm-40", "dw4", "lj13", "lj55"):
        assert sid in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--system", "nope"], "unknown system 'nope'"),
        (["sample", "--run", "/nonexistent/run"], "is not a run directory"),
        (["evaluate", "--run", "/nonexistent/run"], "is not a run directory"),
    ],
)
def test_user_mistakes_give_one_line(capsys, args, message):
    code, _, err = run_main(capsys, *args)
    assert code == 2
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(("model", "new"), [("spline", "coupling or internal"),
                                            ("affine", "coupling (transform: affine)")])
def test_old_model_names_give_one_line_naming_the_new_ones(capsys, tmp_path, model, new):
    code, _, err = run_main(capsys, "train", "--system", "double-well", "--model", model,
                            "--out", str(tmp_path / "r"))
    assert code == 2 and f"model '{model}' is now called {new}" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_report_is_gone_and_points_to_evaluate(capsys, tmp_path):
    code, _, err = run_main(capsys, "report", "--run", str(tmp_path / "run"))
    assert code == 2 and f"`boltzflow evaluate --run {tmp_path / 'run'}`" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_config_typo_is_one_line_in_a_subprocess(tmp_path):
    (tmp_path / "c.toml").write_text("[train]\nlearning_rate = 0.1\n")
    res = cli("train", "--config", str(tmp_path / "c.toml"), "--out", str(tmp_path / "r"))
    assert res.returncode == 2
    assert res.stderr.strip().startswith("error: unknown key 'learning_rate' in section 'train'")
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    res = cli("--debug", "train", "--config", str(tmp_path / "c.toml"))
    assert res.returncode != 0 and "Traceback" in res.stderr


def test_train_sample_evaluate_run_directory(tmp_path, capsys):
    run = tmp_path / "run"
    (tmp_path / "c.yaml").write_text("coupling: {n_layers: 2, hidden: [16]}\n"
                                     "system: {n_data: 2000, n_test: 1000}\n")
    code, out, err = run_main(
        capsys, "train", "--system", "double-well", "--config", str(tmp_path / "c.yaml"),
        "--steps", "30", "--seed", "3", "--out", str(run), "--no-progress",
    )
    assert code == 0, err
    for name in ("config.yaml", "checkpoint.pt", "train_log.csv", "data.npz"):
        assert (run / name).exists(), name
    assert "trained a coupling model of double-well for 30 steps" in out
    assert f"next: boltzflow sample --run {run} -n" in out
    # --checkpoint FILE: the older spelling of --run
    code, out, err = run_main(capsys, "sample", "--checkpoint", str(run / "checkpoint.pt"),
                              "-n", "500", "--no-progress")
    assert code == 0, err
    assert "500 samples" in out and "effective samples" in out
    code, _out, err = run_main(capsys, "evaluate", "--run", str(run))
    assert code == 0, err
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["system"] == "double-well" and metrics["n_samples"] == 500
    assert 0 < metrics["ess"] <= 1 and 0 < metrics["ess_clipped"] <= 1
    assert metrics["ess_samples"] == pytest.approx(500 * metrics["ess"])
    assert metrics["nll"] > 0 and "dF_exact" in metrics
    for name in ("report.md", "density.png", "energy_hist.png", "training.png"):
        assert (run / name).stat().st_size > 0, name
    # the same --out with a different config is refused, not overwritten
    code, _, err = run_main(capsys, "train", "--system", "double-well", "--steps", "31",
                            "--out", str(run), "--no-progress")
    assert code == 2 and "different configuration" in err


def test_simulate_info_and_train_on_the_dataset(tmp_path, capsys):
    ds = tmp_path / "ds"
    code, out, err = run_main(
        capsys, "simulate", "aldp-vacuum", "--ns", "0.01", "--equilibration-ps", "2",
        "--out", str(ds), "--no-progress",
    )
    assert code == 0, err
    assert "500 frames" in out  # the default frame spacing: 0.02 ps
    code, out, err = run_main(capsys, "info", str(ds))
    assert code == 0 and "aldp-vacuum" in out and "amber99sb-ildn" in out
    assert "repartitioned" not in out
    # hydrogen mass repartitioning: 2-fs steps, recorded and shown; a bad mass is one line
    code, out, err = run_main(
        capsys, "simulate", "aldp-vacuum", "--ns", "0.002", "--equilibration-ps", "1",
        "--timestep-fs", "2", "--hydrogen-mass", "3", "--out", str(tmp_path / "hmr"),
        "--no-progress",
    )
    assert code == 0, err
    code, out, _ = run_main(capsys, "info", str(tmp_path / "hmr"))
    assert "2 fs" in out and "hydrogens repartitioned to 3 amu" in out
    code, _, err = run_main(capsys, "simulate", "aldp-vacuum", "--ns", "0.002",
                            "--hydrogen-mass", "0.5", "--out", str(tmp_path / "bad"))
    assert code == 2 and "hydrogen_mass_amu" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()
    (tmp_path / "c.toml").write_text(
        "[internal]\nn_layers = 2\nhidden = [16]\nw_kl = 0.0\n[system]\nn_test = 2\n"
    )
    run = tmp_path / "run"
    code, out, err = run_main(
        capsys, "train", "--system", "aldp-vacuum", "--data", str(ds), "--config",
        str(tmp_path / "c.toml"), "--steps", "5", "--out", str(run), "--no-progress",
    )
    assert code == 0, err
    assert (run / "data.npz").exists()
    # a dataset of another system is refused with a clear line
    code, _, err = run_main(
        capsys, "train", "--system", "aldp-implicit", "--data", str(ds), "--steps", "5",
        "--out", str(tmp_path / "run2"), "--no-progress",
    )
    assert code == 2 and "is for system 'aldp-vacuum'" in err


def test_molecule_without_data_and_toy_with_pdb_options(capsys, tmp_path):
    code, _, err = run_main(capsys, "train", "--system", "aldp-vacuum", "--out", str(tmp_path / "r"))
    assert code == 2 and "--data" in err and "boltzflow simulate aldp-vacuum" in err
    code, _, err = run_main(capsys, "train", "--system", "dw4", "--solvent", "obc2")
    assert code == 2 and "can only be set for a PDB file" in err
    code, _, err = run_main(capsys, "simulate", "dw4", "--out", str(tmp_path / "d"))
    assert code == 2 and "not a molecule" in err


def test_pdb_path_is_accepted_as_a_system(tmp_path, capsys):
    import boltzflow as bf

    system = bf.systems.get("aldp-vacuum")
    pdb = tmp_path / "mol.pdb"
    import openmm.app as app
    import openmm.unit as unit

    with open(pdb, "w") as f:
        app.PDBFile.writeFile(system.openmm_topology, system.positions.numpy() * unit.nanometer, f)
    code, out, err = run_main(
        capsys, "simulate", str(pdb), "--forcefield", "amber99sb-ildn", "--solvent", "vacuum",
        "--temperature", "350", "--ns", "0.002", "--equilibration-ps", "1",
        "--out", str(tmp_path / "ds"), "--no-progress",
    )
    assert code == 0, err
    code, out, _ = run_main(capsys, "info", str(tmp_path / "ds"))
    assert "350 K" in out
    code, _, err = run_main(capsys, "simulate", str(tmp_path / "missing.pdb"))
    assert code == 2 and "missing.pdb" in err and len(err.strip().splitlines()) == 1


def test_demo_runs_the_molecular_pipeline_with_tiny_settings(tmp_path, capsys):
    # The real demo (boltzflow.presets.QUICK_ALDP) takes ~15 min; the hidden --ns/--n-samples
    # and --steps shrink it to seconds. Rerunning it reuses the cached MD and the trained run.
    out = tmp_path / "demo"
    args = ("demo", "--ns", "0.01", "--steps", "10", "--n-samples", "300", "--out", str(out),
            "--no-progress")
    code, text, err = run_main(capsys, *args)
    assert code == 0, err
    assert f"report: {out / 'report.md'}" in text and "ramachandran.png" in text
    assert "valid samples" in text and "ESS" in text
    for name in ("md/provenance.json", "config.yaml", "checkpoint.pt", "metrics.json",
                 "report.md", "ramachandran.png", "phi_profile.png"):
        assert (out / name).exists(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["system"] == "aldp-implicit" and metrics["n_samples"] == 300
    assert 0 <= metrics["fraction_valid"] <= 1
    # it ends with the shipped transferable model sampling a held-out dipeptide, in the report
    from boltzflow import runs
    from boltzflow.demo import ZERO_SHOT_HEADING, ZERO_SHOT_SYSTEM

    shot = out / "zero-shot" / "systems" / runs.slug(ZERO_SHOT_SYSTEM)
    assert json.loads((shot / "metrics.json").read_text())["n_samples"] == 300
    assert "[zero-shot]" in text and "a held-out peptide" in text
    report = (out / "report.md").read_text()
    assert report.count(ZERO_SHOT_HEADING) == 1
    assert f"zero-shot/systems/{runs.slug(ZERO_SHOT_SYSTEM)}/ramachandran.png" in report
    assert "data:image/png;base64" in (out / "report.html").read_text().split("Zero-shot")[-1]
    stamps = {n: (out / n).stat().st_mtime_ns for n in ("md/provenance.json", "checkpoint.pt")}
    code, text, err = run_main(capsys, *args)  # cached: MD and training are not redone
    assert code == 0, err
    assert stamps == {n: (out / n).stat().st_mtime_ns for n in stamps}
    assert (out / "report.md").read_text().count(ZERO_SHOT_HEADING) == 1
    code, _, err = run_main(capsys, "demo", "--system", "double-well", "--quality")
    assert code == 2 and "--quality" in err


def test_transferable_run_samples_and_evaluates_a_named_molecule(tmp_path, capsys,
                                                                  tiny_dipeptides):
    (tmp_path / "c.yaml").write_text(
        "tbg: {hidden: 8, n_layers: 1, frames_per_peptide: 4, solver: rk4, solver_steps: 4}\n"
        "train: {batch_size: 8, warmup: 0}\n"
    )
    run = tmp_path / "tbg"
    code, out, err = run_main(
        capsys, "train", "--model", "tbg", "--dataset", str(tiny_dipeptides), "--config",
        str(tmp_path / "c.yaml"), "--steps", "2", "--out", str(run), "--no-progress",
    )
    assert code == 0, err
    assert f"next: boltzflow sample --run {run} --system ID" in out
    code, _, err = run_main(capsys, "sample", "--run", str(run), "-n", "4", "--no-progress")
    assert code == 2 and "transferable: name the molecule with --system" in err
    assert len(err.strip().splitlines()) == 1
    code, out, err = run_main(capsys, "sample", "--run", str(run), "--system", "dipeptide:AC",
                              "-n", "4", "--no-progress")
    assert code == 0, err
    assert (run / "systems" / "dipeptide-AC" / "samples.npz").exists()
    code, out, err = run_main(capsys, "evaluate", "--run", str(run), "--system", "dipeptide:AC",
                              "--no-plots")
    assert code == 0, err
    metrics = json.loads((run / "systems" / "dipeptide-AC" / "metrics.json").read_text())
    assert metrics["system"] == "dipeptide:AC" and metrics["n_samples"] == 4
    assert "ess_samples" in metrics and "fraction_valid" in metrics
