"""``boltzflow demo --system MOLECULE``: a user's molecule in one command (plan, MD with
parallel tempering, training, sampling, report), resumable, with one-line errors."""

from __future__ import annotations

import json

import openmm.app as app
import openmm.unit as unit
import pytest
import yaml
from cli_util import run_main

import boltzflow as bf
from boltzflow.models import parse_config
from boltzflow.presets import MAX_STEPS_PER_NS, Speeds, energy_term, plan_molecule


def _write_pdb(system_id: str, path) -> None:
    system = bf.systems.get(system_id)
    with open(path, "w") as f:
        app.PDBFile.writeFile(system.openmm_topology, system.positions.numpy() * unit.nanometer, f)


def test_one_command_on_a_capped_peptide_with_a_ring(tmp_path, capsys):
    """A PDB of Ace-Phe-Nme (32 atoms: the larger molecules' energy term, the log-weight
    variance): plan printed and saved, report with the ring's closing bond and the
    high-energy count; a rerun resumes without redoing MD or training."""
    import csv

    pdb = tmp_path / "phe.pdb"
    _write_pdb("peptide:ACE-PHE-NME", pdb)
    out = tmp_path / "run"
    args = ("demo", "--system", str(pdb), "--temperature", "300", "--minutes", "2",
            "--ns", "0.005", "--steps", "20", "--n-samples", "100", "--seed", "2", "--out",
            str(out), "--no-progress")
    code, text, err = run_main(capsys, *args)
    assert code == 0, err
    assert "plan:" in text and "s per training step" in text and "ring closure PHE2:" in text
    assert "(0.25 × log-weight variance from step 10)" in text
    assert "plan: 0.005 ns of MD" in text and "20 steps" in text
    assert ("100 samples, then 100 refined by annealed importance sampling (25 levels × 2 MALA "
            "moves); seed 2") in text
    assert "20 steps of 512 frames, compiled splines" in text  # above 30 atoms
    plan = json.loads((out / "plan.json").read_text())
    assert plan["minutes"] == 2 and plan["speeds"]["md_ns_seconds"] > 0
    # the probe timed each thread count it could use; the plan prices and trains with the fastest
    tried, speeds = plan["speeds"]["step_seconds_by_threads"], plan["speeds"]
    assert "1" in tried and speeds["step_seconds"] == min(tried.values()) == tried[str(
        speeds["threads"])]
    assert f"training on {speeds['threads']})" in text
    assert plan["preset"]["md"]["replicas"] == 4 and plan["preset"]["md"]["t_max"] == 600
    # the MD's seconds against the plan's, recorded; --steps is never trimmed
    assert plan["md_seconds"] > 0 and plan["md_seconds_planned"] > 0
    assert plan["steps_after_md"] == 20
    rows = list(csv.DictReader((out / "train_log.csv").open()))
    assert float(rows[-1]["lv"]) > 0 and "kl" not in rows[-1]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_samples"] == 100 and 0 <= metrics["n_high_energy"] <= 100
    # --ns overrides the plan's MD and so its split: 250 frames, the last tenth held out (the
    # plan's own split, for at least 0.2 ns, would thin the training frames to 9,000)
    system = yaml.safe_load((out / "config.yaml").read_text())["system"]
    assert (system["n_data"], system["n_test"]) == (225, 25)
    train = yaml.safe_load((out / "config.yaml").read_text())["train"]
    assert (train["batch_size"], train["compile"], train["seed"]) == (512, True, 2)
    assert f"fits frames it saw {metrics['nll_gap']:.1f} nats better" in text
    assert metrics["nll_gap"] == pytest.approx(metrics["nll"] - metrics["nll_train"])
    (ring,) = metrics["ring_closures"]
    assert ring["bond"].startswith("PHE2:") and ring["md_sd"] > 0 and ring["model_sd"] > 0
    for name in ("md/provenance.json", "checkpoint.pt", "report.md", "report.html"):
        assert (out / name).exists(), name
    assert "ring closure PHE2:" in (out / "report.md").read_text()
    # then more flow samples refined by AIS, exact weights, evaluated in their own folder and
    # summed up in the run's report (--n-samples caps them in a test)
    assert plan["speeds"]["refine_seconds"] > 0
    assert plan["preset"]["refine"]["method"] == "ais" and plan["preset"]["refine"]["levels"] == 25
    assert "[5/5] refining 100 more flow samples by annealed importance sampling" in text
    refined = json.loads((out / "ais" / "metrics.json").read_text())
    assert refined["n_samples"] == 100 and refined["refine_levels"] == 25
    assert refined["refine_energy_evaluations_per_sample"] > 25 * 2
    assert 0 < refined["ess"] <= 1 and refined["ess_samples"] == pytest.approx(100 * refined["ess"])
    assert f"refined by AIS ({refined['refine_energy_evaluations_per_sample']:.0f} energy" in text
    report = (out / "report.md").read_text()
    assert "## Refined by annealed importance sampling" in report and "ais/report.html" in report
    assert f"{refined['ess_samples']:.1f} effective samples" in report
    assert "Which estimate: the " in report and "Which estimate: the " in text
    assert (out / "ais" / "report.html").exists() and (out / "ais" / "samples.npz").exists()
    terms = {t["term"]: t for t in metrics["energy_terms"]}
    assert {"bond", "lj", "all terms"} <= set(terms) and 0 <= terms["lj"]["share"] <= 1
    assert "energy term lj: samples / MD" in (out / "report.md").read_text()
    stamps = {n: (out / n).stat().st_mtime_ns for n in ("md/provenance.json", "checkpoint.pt")}
    code, text, err = run_main(capsys, *args)
    assert code == 0, err
    assert "resuming" in text and "measuring" not in text
    assert stamps == {n: (out / n).stat().st_mtime_ns for n in stamps}


@pytest.mark.parametrize(
    ("edit", "message"),
    [(lambda t: "", "no ATOM/HETATM records"),
     (lambda t: t.replace("PRO", "XYZ"), "residue XYZ 2 .*not supported")],
)
def test_bad_pdb_or_unknown_residue_is_one_line(tmp_path, capsys, edit, message):
    import re

    pdb = tmp_path / "pro.pdb"
    _write_pdb("peptide:ACE-PRO-NME", pdb)
    pdb.write_text(edit(pdb.read_text()))
    code, _, err = run_main(capsys, "demo", "--system", str(pdb), "--out", str(tmp_path / "o"))
    assert code == 2 and re.search(message, err), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "o").exists()  # nothing half-written


def test_seed_gives_another_flow_and_the_same_seed_the_same(tmp_path, capsys):
    """``--seed`` is the training seed: recorded in the run's config, another seed trains
    another flow (other samples), the same seed in another directory the same one."""
    import numpy as np

    def demo(name: str, *seed: str) -> np.ndarray:
        out = tmp_path / name
        code, _, err = run_main(capsys, "demo", "--system", "double-well", "--steps", "30",
                                "--n-samples", "300", *seed, "--out", str(out), "--no-progress")
        assert code == 0, err
        train = yaml.safe_load((out / "config.yaml").read_text())["train"]
        assert train["seed"] == (int(seed[1]) if seed else 0)
        return np.load(out / "samples.npz")["x"]

    default, three, again = demo("s0"), demo("s3", "--seed", "3"), demo("s3b", "--seed", "3")
    assert np.array_equal(three, again)
    assert not np.allclose(default, three)


def test_options_that_do_not_apply_are_one_line(capsys, tmp_path):
    code, _, err = run_main(capsys, "demo", "--system", "double-well", "--minutes", "5")
    assert code == 2 and "--minutes" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_main(capsys, "demo", "--system", "peptide:ACE-PRO-NME", "--quality")
    assert code == 2 and "--quality" in err


def test_steps_after_md_cut_what_the_overrun_would_have_paid_for():
    from boltzflow.presets import steps_after_md

    # v11's Pro-Phe: MD 1,100 s where the plan said 998, 2,600 steps of 0.17 s
    assert steps_after_md(2600, 1100.0, 998.0, 0.17) == 2000
    assert steps_after_md(2600, 900.0, 998.0, 0.17) == 2600  # faster MD: never more steps
    assert steps_after_md(2600, 998.5, 998.0, 0.17) == 2500  # whole hundreds, rounded up
    assert steps_after_md(2600, 5000.0, 998.0, 0.17) == 1300  # at most half the plan
    assert steps_after_md(300, 5000.0, 0.0, 0.17) == 100 and steps_after_md(20, 99.0, 0.0, 1.0) == 20


def test_training_is_trimmed_where_the_md_overran_its_plan(tmp_path):
    from boltzflow.demo import trim_after_md

    preset = plan_molecule("m.pdb", 40, 300.0, 30, Speeds(100.0, 0.3, 2))
    planned = preset.md["ns"] * 100.0 * 2  # 4 replicas, 2 at a time

    def plan(name: str):
        path = tmp_path / name
        path.write_text(json.dumps({"minutes": 30, "preset": {}, "speeds": {
            "md_ns_seconds": 100.0, "step_seconds": 0.3, "workers": 2, "threads": 1}}))
        return path

    lines: list[str] = []
    late = plan("late.json")
    trimmed = trim_after_md(preset, late, planned + 90.0, lines.append)
    # 90 s over at 0.3 s a step: 300 fewer steps, the energy term still from half-way
    assert trimmed.train["steps"] == preset.train["steps"] - 300
    assert trimmed.model["kl_start"] == trimmed.train["steps"] // 2
    assert trimmed.md == preset.md and trimmed.model["w_lv"] == preset.model["w_lv"]
    assert len(lines) == 1 and f"{trimmed.train['steps']} training steps instead of " \
        f"{preset.train['steps']}, to keep the 30-minute budget" in lines[0]
    saved = json.loads(late.read_text())
    assert saved["steps_after_md"] == trimmed.train["steps"]
    assert saved["md_seconds"] == planned + 90.0
    assert saved["md_seconds_planned"] == pytest.approx(planned)
    # resumed with its MD cached (a second): the saved decision, silently
    assert trim_after_md(preset, late, 1.0, lines.append) == trimmed and len(lines) == 1
    # MD on time: the plan as it was; --steps: recorded, never trimmed
    assert trim_after_md(preset, plan("on-time.json"), planned - 1.0, lines.append) == preset
    fixed = preset.replace(train={"steps": 20})
    assert trim_after_md(fixed, plan("fixed.json"), planned + 90.0, lines.append,
                         fixed=True) == fixed
    assert json.loads((tmp_path / "fixed.json").read_text())["steps_after_md"] == 20
    assert len(lines) == 1


def test_plan_scales_with_the_budget_and_the_measured_speeds():
    fast = plan_molecule("m.pdb", 40, 300.0, 30, Speeds(100.0, 0.3, 2))
    slow = plan_molecule("m.pdb", 40, 300.0, 30, Speeds(200.0, 0.6, 2))
    long = plan_molecule("m.pdb", 40, 300.0, 60, Speeds(100.0, 0.3, 2))
    assert slow.md["ns"] < fast.md["ns"] < long.md["ns"]
    assert slow.train["steps"] < fast.train["steps"] <= long.train["steps"]
    assert fast.model["kl_start"] == fast.train["steps"] // 2
    # the energy term by size: none (maximum likelihood) up to 30 atoms, a quarter of the
    # log-weight variance above (docs/molecules.md, docs/benchmarks.md)
    assert (fast.model["w_kl"], fast.model["w_lv"], fast.model["n_layers"]) == (0.0, 0.25, 6)
    small = plan_molecule("m.pdb", 22, 300.0, 30, Speeds(100.0, 0.3, 2))
    assert (small.model["w_kl"], small.model["w_lv"], small.model["n_layers"]) == (0.0, 0.0, 8)
    assert energy_term(small.model) == "no energy term"
    assert energy_term({"w_kl": 1.0}) == "reverse KL"
    assert energy_term(fast.model) == "0.25 × log-weight variance"
    # the batch by size: 512 frames with compiled splines above 30 atoms, 256 eager up to it
    assert (fast.train["batch_size"], fast.train["compile"]) == (512, True)
    assert small.train["batch_size"] == 256 and not small.train.get("compile", False)
    parse_config({"model": "internal", "internal": fast.model})  # a valid section
    # MD ~55 % and training ~22 % of the budget at the measured speeds
    md_s = fast.md["ns"] * 100.0 * 2  # 4 replicas on 2 workers
    assert 0.5 * 1800 < md_s <= 0.56 * 1800
    assert 0.17 * 1800 < fast.train["steps"] * 0.3 <= 0.22 * 1800
    # where the 10-ns cap leaves MD time unused, training gets it: fast MD, 10 ns in 200 s
    capped = plan_molecule("m.pdb", 22, 300.0, 30, Speeds(10.0, 0.3, 2))
    assert capped.md["ns"] == 10.0
    spare = 0.55 * 1800 - 10.0 * 10.0 * 2
    assert (0.22 * 1800 + spare) - 100 * 0.3 < capped.train["steps"] * 0.3 <= 0.22 * 1800 + spare
    # cheap training steps: no more than MAX_STEPS_PER_NS per ns of MD, the rest of the
    # training share goes to MD (more ns than `fast`, same total)
    quick = plan_molecule("m.pdb", 40, 300.0, 30, Speeds(100.0, 0.05, 2))
    assert quick.md["ns"] > fast.md["ns"]
    assert 0.95 * MAX_STEPS_PER_NS * quick.md["ns"] - 100 < quick.train["steps"] \
        <= MAX_STEPS_PER_NS * quick.md["ns"]
    used = quick.md["ns"] * 100.0 * 2 + quick.train["steps"] * 0.05
    assert 0.72 * 1800 < used <= 0.77 * 1800
    assert fast.train["steps"] < MAX_STEPS_PER_NS * fast.md["ns"]  # not rebalanced
    # MD at 2 fs with hydrogens at 3 amu (docs/md.md), a frame every 0.02 ps; the last 100 ps
    # held out, the rest train (10 ns: 495,000 of 500,000)
    assert (fast.md["timestep_fs"], fast.md["hydrogen_mass_amu"]) == (2.0, 3.0)
    assert fast.md["frame_interval_ps"] == 0.02 and fast.data["n_test"] == 5000
    assert fast.data["n_data"] == round(fast.md["ns"] * 50_000) - 5000
    assert capped.data["n_data"] == 495_000
    cold = plan_molecule("m.pdb", 40, 310.0, 30, Speeds(100.0, 0.1, 2),
                         {"forcefield": "amber14", "temperature": 310.0})
    assert cold.md["t_max"] == 600 and cold.data["temperature"] == 310.0
    with pytest.raises(ValueError, match="minutes"):
        plan_molecule("m.pdb", 40, 300.0, 0, Speeds(100.0, 0.1, 2))


def test_plan_refines_what_its_share_of_the_budget_pays_for():
    from boltzflow.presets import REFINE_SHARE, refine_evaluations

    assert plan_molecule("m.pdb", 40, 300.0, 30, Speeds(100.0, 0.3, 2)).refine == {}  # unpriced
    priced = plan_molecule("m.pdb", 40, 300.0, 30, Speeds(100.0, 0.3, 2, refine_seconds=5e-4))
    r = priced.refine
    assert (r["method"], r["levels"], r["steps"]) == ("ais", 25, 2)
    seconds = r["n_samples"] * refine_evaluations(r) * 5e-4
    assert REFINE_SHARE * 1800 - 1000 * 54 * 5e-4 < seconds <= REFINE_SHARE * 1800
    assert r["n_samples"] % 1000 == 0
    # twice the budget, twice the particles; bounded below and above
    assert plan_molecule("m.pdb", 40, 300.0, 60, Speeds(100.0, 0.3, 2, refine_seconds=5e-4)
                         ).refine["n_samples"] in (2 * r["n_samples"], 2 * r["n_samples"] + 1000)
    assert plan_molecule("m.pdb", 40, 300.0, 30, Speeds(100.0, 0.3, 2, refine_seconds=1.0)
                         ).refine["n_samples"] == 1000
    assert plan_molecule("m.pdb", 40, 300.0, 30, Speeds(100.0, 0.3, 2, refine_seconds=1e-7)
                         ).refine["n_samples"] == 20000


def test_gap_line_says_what_helps_only_when_the_flow_learned_its_frames():
    from boltzflow.demo import _gap_line

    lines: list[str] = []
    _gap_line({"nll": -450.0, "nll_train": -455.2, "nll_gap": 5.2}, lines.append)
    _gap_line({"nll": -451.8, "nll_train": -452.1, "nll_gap": 0.3}, lines.append)
    _gap_line({"nll": -451.8}, lines.append)  # an ODE kind: no training-frame NLL
    assert len(lines) == 2
    assert "5.2 nats better" in lines[0] and "longer MD helps" in lines[0]
    assert "0.3 nats better" in lines[1] and "longer MD" not in lines[1]


def test_ess_line_gives_the_log_weight_spread_and_its_gaussian_ess_where_known():
    from boltzflow.demo import ess_line

    m = {"ess": 0.006, "ess_samples": 121.0, "ess_clipped": 0.023, "max_weight": 0.05}
    assert "σ" not in ess_line(m)
    line = ess_line({**m, "log_w_spread": 1.5})
    assert "121 effective samples" in line and "σ 1.50 nats" in line
    assert "exp(−σ²) = 10.5%" in line


def test_which_estimate_prefers_a_finite_variance_tail_then_the_cheaper_one():
    from boltzflow.demo import preferred_estimate, which_estimate

    # the v10 Pro-Phe run: plain weights collapsed (5 of 20,000, tail 0.58), AIS 1,467 of 4,000
    plain = {"n_samples": 20000, "ess_samples": 5.0, "ess_tail_index": 0.58}
    refined = {"n_samples": 4000, "ess_samples": 1467.0, "ess_tail_index": 0.41,
               "refine_energy_evaluations_per_sample": 54.0}
    line = which_estimate(plain, refined)
    assert line.startswith("Which estimate: the refined one") and "plain 0.25, refined 6.8" in line
    # a healthy flow: both tails finite, plain reweighting buys more per energy evaluation
    healthy = {**plain, "ess_samples": 2000.0, "ess_tail_index": 0.45}
    line = which_estimate(healthy, refined)
    assert line.startswith("Which estimate: the plain one") and "both finite-variance" in line
    assert "plain 100, refined 6.8" in line
    # the refined weights' tail heavy, the plain one's not: plain, whatever the cost
    assert which_estimate(healthy, {**refined, "ess_tail_index": 0.7, "ess_samples": 3999.0}
                          ).startswith("Which estimate: the plain one")
    # both heavy: the cheaper per evaluation, said as such
    line = which_estimate(plain, {**refined, "ess_tail_index": 0.6})
    assert "the refined one" in line and "neither finite-variance" in line
    assert "no tail index" in which_estimate({**plain, "ess_tail_index": None}, refined)
    assert preferred_estimate({**plain, "ess_tail_index": None}, refined) is None
    assert preferred_estimate(plain, refined) == "refined"
    assert preferred_estimate(healthy, refined) == "plain"


def test_sources_line_names_the_term_the_weights_follow_only_when_it_matters():
    from boltzflow.demo import _sources_line

    terms = [{"term": "bond", "model_mean": 23.5, "md_mean": 23.6, "share": 0.01},
             {"term": "lj", "model_mean": 4.21, "md_mean": 1.83, "share": 0.472},
             {"term": "all terms", "model_mean": 0.0, "md_mean": 0.0, "share": 0.59}]
    lines: list[str] = []
    _sources_line({"energy_terms": terms}, lines.append)
    assert len(lines) == 1 and "follow the lj energy most (47% of their variance" in lines[0]
    assert "samples 4.21 kT on average, MD 1.83" in lines[0]
    lines.clear()
    _sources_line({"energy_terms": [{**terms[1], "share": 0.1}, terms[2]]}, lines.append)
    _sources_line({"energy_terms": None}, lines.append)
    assert lines == []


def test_the_presets_docstring_examples_hold():
    import doctest

    import boltzflow.presets

    result = doctest.testmod(boltzflow.presets)
    assert result.attempted >= 5 and result.failed == 0
