"""The dipeptide dataset builder: index and split, resume, crash safety, sharding, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import boltzflow.md
import boltzflow.systems
from boltzflow.cli import main
from boltzflow.data import Dataset
from boltzflow.data import dipeptides as dp
from boltzflow.errors import BoltzflowError

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
TORCHRUN = Path(sys.executable).with_name("torchrun")
SEQS = ["AC", "GA"]  # AC is held out, GA is training data
TINY = {"ns": 0.003, "frame_interval_ps": 0.5, "equilibration_ps": 0.5}  # 6 frames per peptide
TINY_ARGS = ["--ns", "0.003", "--frame-interval-ps", "0.5", "--equilibration-ps", "0.5"]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dipeptides") / "one"
    dp.build_dipeptide_dataset(out, SEQS, **TINY, progress=False)
    return out


def _frames(root: Path) -> dict[str, torch.Tensor]:
    index = dp.load_index(root)
    return {s: index.dataset(s).positions for s in index.sequences()}


def _cli(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(args)
    captured = capsys.readouterr()
    return exc.value.code, captured.out, captured.err


def test_split_is_fixed_spread_and_disjoint():
    test = set(dp.TEST_SEQUENCES)
    assert len(test) >= 12 and {"AC", "KI", "NY"} <= test
    assert set("".join(test)) == set(dp.AMINO_ACID_LETTERS)  # every residue is held out somewhere
    train = set(dp.default_train_sequences())
    assert not train & test and len(train | test) == 400 == len(dp.all_sequences())
    assert dp.split_of("NY") == "test" and dp.split_of("YN") == "train"


def test_build_index_round_trip_and_split(built):
    index = dp.load_index(built)
    assert index.root == built and index.sequences() == SEQS
    assert index.sequences("test") == ["AC"] and index.sequences("train") == ["GA"]
    assert dp.load_index(built / dp.INDEX_NAME).peptides == index.peptides
    raw = json.loads((built / dp.INDEX_NAME).read_text())
    assert raw["format"] == "boltzflow-dipeptides" and raw["temperature"] == 310.0
    assert raw["md"]["frame_interval_ps"] == 0.5 and raw["md"]["n_frames"] == 6
    for entry in index.peptides:
        data = index.dataset(entry.sequence)
        assert isinstance(data, Dataset) and data.system_id == entry.system_id
        assert data.positions.shape == (entry.n_frames, entry.n_atoms, 3) == (6, data.n_atoms, 3)
        assert data.provenance["seed"] == dp.peptide_seed(0, entry.sequence)
        assert torch.isfinite(data.energies).all()
    assert index.entry("dipeptide:ga").n_atoms == 20  # NH3+-Gly (9 atoms) + Ala-COO- (11)
    with pytest.raises(BoltzflowError, match="not in the dipeptide dataset"):
        index.dataset("KI")


def test_rerun_is_a_no_op(built, monkeypatch):
    before = {p: p.stat().st_mtime_ns for p in built.rglob("*") if p.is_file()}

    def no_md(*args, **kwargs):
        raise AssertionError("a complete peptide was simulated again")

    monkeypatch.setattr(boltzflow.md, "simulate", no_md)
    index = dp.build_dipeptide_dataset(built, SEQS, **TINY, progress=False)
    assert index.sequences() == SEQS
    changed = [
        p for p, t in before.items() if p.name != dp.INDEX_NAME and p.stat().st_mtime_ns != t
    ]
    assert changed == []


def test_partial_peptide_resumes_and_other_settings_are_refused(built, tmp_path):
    out = tmp_path / "grow"
    dp.build_dipeptide_dataset(out, ["GA"], **TINY, frames_per_chunk=2, progress=False)
    chunk0 = out / "GA" / "chunks" / "chunk-00000.npz"
    t0 = chunk0.stat().st_mtime_ns
    longer = {**TINY, "ns": 0.005}  # a rerun with a larger ns extends the peptide
    index = dp.build_dipeptide_dataset(out, ["GA"], **longer, frames_per_chunk=2, progress=False)
    assert index.entry("GA").n_frames == 10 and chunk0.stat().st_mtime_ns == t0
    assert torch.equal(index.dataset("GA").positions[:6], _frames(built)["GA"])
    with pytest.raises(BoltzflowError, match="other settings.*frame_interval_ps"):
        dp.build_dipeptide_dataset(out, ["AC"], **{**TINY, "frame_interval_ps": 1.0})
    with pytest.raises(BoltzflowError, match=r"other settings.*hydrogen_mass_amu: None there vs 3.0"):
        dp.build_dipeptide_dataset(out, ["AC"], **TINY, hydrogen_mass_amu=3.0)


def test_hydrogen_mass_repartitioning_is_a_build_setting(tmp_path, capsys):
    out = tmp_path / "hmr"
    code, _, err = _cli(["dataset", "dipeptides", "--out", str(out), "--sequences", "GA",
                         *TINY_ARGS, "--timestep-fs", "2", "--hydrogen-mass", "3",
                         "--no-progress"], capsys)
    assert code == 0, err
    index = dp.load_index(out)
    assert index.md["hydrogen_mass_amu"] == 3.0 and index.md["timestep_fs"] == 2.0
    assert index.dataset("GA").provenance["hydrogen_mass_amu"] == 3.0
    # the frames carry the unchanged force field's energies
    system = boltzflow.systems.get("dipeptide:GA")
    data = index.dataset("GA")
    u = system.energy.energy(data.positions.double()).detach()
    assert torch.allclose(u, data.energies.double(), atol=1e-2)
    with pytest.raises(BoltzflowError, match="hydrogen_mass_amu: 3.0 there vs None now"):
        dp.build_dipeptide_dataset(out, ["AC"], **TINY, timestep_fs=2.0)
    with pytest.raises(BoltzflowError, match=r"hydrogen_mass_amu must be a number in \(1, 5\]"):
        dp.build_dipeptide_dataset(tmp_path / "bad", ["AC"], **TINY, hydrogen_mass_amu=9.0)
    assert not (tmp_path / "bad").exists()


def test_two_workers_give_the_same_frames(built, tmp_path):
    dp.build_dipeptide_dataset(tmp_path / "two", SEQS, **TINY, workers=2, progress=False)
    one, two = _frames(built), _frames(tmp_path / "two")
    assert one.keys() == two.keys() and all(torch.equal(one[s], two[s]) for s in one)
    assert dp.load_index(tmp_path / "two").peptides == dp.load_index(built).peptides


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed next to python")
def test_torchrun_two_ranks_give_the_same_index(built, tmp_path):
    cmd = [
        str(TORCHRUN),
        "--nproc-per-node",
        "2",
        "-m",
        "boltzflow",
        "dataset",
        "dipeptides",
        "--out",
        str(tmp_path / "ranks"),
        "--sequences",
        ",".join(SEQS),
        *TINY_ARGS,
    ]
    proc = subprocess.run(cmd, env=ENV, cwd=tmp_path, capture_output=True, timeout=240)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    out = proc.stdout.decode()
    assert "[rank 0] AC" in out and "[rank 1] GA" in out  # i % world == rank
    assert out.count("2 peptides (1 train, 1 test)") == 1  # rank 0 alone reports
    assert (tmp_path / "ranks" / dp.INDEX_NAME).read_text() == (built / dp.INDEX_NAME).read_text()
    one, ranks = _frames(built), _frames(tmp_path / "ranks")
    assert all(torch.equal(one[s], ranks[s]) for s in one)


def test_sigkill_mid_build_then_rerun_keeps_finished_peptides(tmp_path):
    out = tmp_path / "killed"
    args = [
        "--ns",
        "0.03",
        "--frame-interval-ps",
        "0.5",
        "--equilibration-ps",
        "0.5",
        "--frames-per-chunk",
        "5",
        "--no-progress",
    ]
    cmd = [
        sys.executable,
        "-m",
        "boltzflow",
        "dataset",
        "dipeptides",
        "--out",
        str(out),
        "--sequences",
        "GA,AC",
        *args,
    ]
    proc = subprocess.Popen(
        cmd,
        env=ENV,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    index_file, second = out / dp.INDEX_NAME, out / "AC" / "provenance.json"
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            if index_file.exists() and second.exists() and json.loads(second.read_text())["chunks"]:
                break  # GA is finished and indexed, AC has a chunk or more but not all
            time.sleep(0.01)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert dp.load_index(out).sequences() == ["GA"]  # the index lists only what is complete
    partial = json.loads(second.read_text())
    assert 0 < partial["n_frames"] < 60
    finished = {p: p.stat().st_mtime_ns for p in (out / "GA").rglob("*") if p.is_file()}

    index = dp.build_dipeptide_dataset(
        out,
        ["GA", "AC"],
        ns=0.03,
        frame_interval_ps=0.5,
        equilibration_ps=0.5,
        frames_per_chunk=5,
        progress=False,
    )
    assert all(p.stat().st_mtime_ns == t for p, t in finished.items())  # GA was not redone
    assert index.sequences() == ["AC", "GA"] and [p.n_frames for p in index.peptides] == [60, 60]
    for seq in index.sequences():
        data = Dataset.load(out / seq, verify=True)  # every chunk checks against its sha256
        assert len(data) == 60 and torch.isfinite(data.positions).all()
        assert (data.time_ps.diff() > 0).all()  # no frame lost or repeated across the restart


def test_cli_bad_input_one_line_errors(tmp_path, capsys):
    base = ["dataset", "dipeptides", "--out", str(tmp_path / "d")]
    code, _, err = _cli([*base, "--sequences", "AC,XZ"], capsys)
    assert code == 2 and err.startswith("error: sequence 'XZ'") and err.count("\n") == 1
    code, _, err = _cli([*base, "--sequences", "ACK"], capsys)
    assert code == 2 and "'ACK' is not a dipeptide" in err
    code, _, err = _cli([*base, "--sequences", "AC", "--ns", "0"], capsys)
    assert code == 2 and err.startswith("error: ns (--ns) must be > 0")
    code, _, err = _cli([*base, "--sequences", "AC", "--replicas", "0"], capsys)
    assert code == 2 and "replicas must be" in err
    code, _, err = _cli(base, capsys)
    assert code == 2 and "exactly one of --sequences, --all or --split" in err
    code, _, err = _cli([*base, "--all", "--split", "test"], capsys)
    assert code == 2 and "(got --all, --split)" in err
    code, _, err = _cli([*base, "--split", "valid"], capsys)
    assert code == 2 and "--split must be train or test" in err
    assert not (tmp_path / "d").exists()  # nothing is written for bad input
    code, _, err = _cli(["dataset", "info", str(tmp_path)], capsys)
    assert code == 2 and "not a dipeptide dataset" in err


def test_cli_info_lists_the_peptides(built, capsys):
    code, out, _ = _cli(["dataset", "info", str(built)], capsys)
    assert code == 0
    assert "2 peptides (1 train, 1 test)" in out
    rows = [line.split() for line in out.splitlines() if "AC" in line or "GA" in line]
    cells = [[c for c in row if c not in "│┃"] for row in rows]
    assert ["AC", "test", "24", "6"] in cells and ["GA", "train", "20", "6"] in cells


def test_load_index_rejects_other_versions(built, tmp_path):
    data = json.loads((built / dp.INDEX_NAME).read_text())
    (tmp_path / dp.INDEX_NAME).write_text(json.dumps({**data, "format_version": 99}))
    with pytest.raises(BoltzflowError, match="format_version 99"):
        dp.load_index(tmp_path)
