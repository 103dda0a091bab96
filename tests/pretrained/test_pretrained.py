"""The pretrained transferable model shipped inside the package (boltzflow.pretrained)."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from cli_util import run_main

from boltzflow import pretrained, runs, systems
from boltzflow.errors import BoltzflowError
from boltzflow.sampling import Samples
from boltzflow.training import load_checkpoint


def test_the_shipped_model_is_small_complete_and_held_out_from_its_own_training():
    source = pretrained.package_dir("tbg-ic")
    files = [p for p in source.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 20e6  # ships inside the package
    info = pretrained.provenance("tbg-ic")
    assert hashlib.sha256((source / "checkpoint.pt").read_bytes()).hexdigest() == info["sha256"]
    state = load_checkpoint(source / "checkpoint.pt")
    assert "optimizer" not in state and state["metadata"]["kind"] == "tbg-ic"
    assert set(state["metadata"]["train_sequences"]) == set(info["dataset"]["train"])
    held_out = set(info["dataset"]["test"])
    assert held_out and not held_out & set(info["dataset"]["train"])
    for seq in held_out:  # every held-out peptide has its small MD reference
        path = source / pretrained.REFERENCES / f"dipeptide-{seq}.npz"
        frames = torch.from_numpy(__import__("numpy").load(path)["positions"])
        assert frames.shape[1:] == (systems.get(f"dipeptide:{seq}").n_atoms, 3)
    assert info["command"] and info["step"] > 0
    assert pretrained.REFERENCES == runs.SHIPPED_REFERENCES  # where evaluate looks for them


def test_install_load_and_sample_a_held_out_dipeptide_zero_shot(tmp_path):
    seq = pretrained.provenance("tbg-ic")["dataset"]["test"][0]
    system = systems.get(f"dipeptide:{seq}")
    run = pretrained.load("tbg-ic", tmp_path / "pt")
    assert run.model.name == "tbg-ic" and run.system is None
    torch.manual_seed(0)
    samples = runs.sample(run, 64, system=system, progress=False)
    assert samples.x.shape == (64, system.n_atoms, 3) and torch.isfinite(samples.x).all()
    # the exact density, evaluated the other way, agrees with the sampling log q
    flow = run.model.flow_for(system)
    with torch.no_grad():
        again = flow.log_prob(samples.x.float())
    ok = torch.isfinite(samples.log_q)
    assert ok.float().mean() > 0.9
    assert ((again - samples.log_q)[ok].abs() < 1e-2).float().mean() > 0.9
    reference = runs.reference_frames(run, system, None)
    assert reference is not None and reference.shape[1:] == (system.n_atoms, 3)


def test_install_keeps_an_installed_model_and_refuses_another_run(tmp_path):
    out = pretrained.install("tbg-ic", tmp_path / "pt")
    (out / "systems").mkdir()
    (out / "systems" / "kept.txt").write_text("x")
    assert pretrained.install("tbg-ic", out) == out and (out / "systems" / "kept.txt").exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.yaml").write_text("version: 2\n")
    with pytest.raises(BoltzflowError, match="already holds another run"):
        pretrained.install("tbg-ic", other)
    assert sorted(p.name for p in other.iterdir()) == ["config.yaml"]  # nothing written
    with pytest.raises(BoltzflowError, match="no pretrained model 'nope'; shipped: tbg-ic"):
        pretrained.install("nope", tmp_path / "x")


def test_cli_samples_the_shipped_model_without_training(tmp_path, capsys):
    seq = pretrained.provenance("tbg-ic")["dataset"]["test"][0]
    run = tmp_path / "pt"
    code, out, err = run_main(capsys, "sample", "--model", "tbg-ic", "--system",
                              f"dipeptide:{seq}", "-n", "40", "--run", str(run),
                              "--no-progress")
    assert code == 0, err
    assert f"→ run directory {run}" in out and "effective samples" in out
    where = run / "systems" / f"dipeptide-{seq}"
    assert len(Samples.load(where / "samples.npz")) == 40
    code, out, err = run_main(capsys, "evaluate", "--run", str(run), "--system",
                              f"dipeptide:{seq}", "--no-plots")
    assert code == 0, err
    metrics = json.loads((where / "metrics.json").read_text())
    assert metrics["energy_w2_model"] is not None  # against the shipped MD reference
    code, _, err = run_main(capsys, "sample", "--model", "nope", "--system", "dipeptide:AC")
    assert code == 2 and "no pretrained model 'nope'" in err and len(err.strip().splitlines()) == 1


def test_info_names_what_the_shipped_model_was_trained_on(capsys):
    info = pretrained.provenance("tbg-ic")
    code, out, err = run_main(capsys, "info", "tbg-ic")
    assert code == 0, err
    assert f"{len(info['dataset']['train'])} dipeptides" in out and info["sha256"] in out
    assert ", ".join(info["dataset"]["test"]) in out
