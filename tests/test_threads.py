"""Thread counts from the cores that are actually free."""

from __future__ import annotations

import os

import pytest
import torch

from boltzflow import threads


def test_free_cores_counts_the_cores_others_are_not_busy_on(monkeypatch):
    cores = len(os.sched_getaffinity(0))
    n_cpu = os.cpu_count()
    readings = iter([(0.0, 0.0), (100.0 * (n_cpu - 1), 100.0 * n_cpu)])  # all but one CPU busy
    monkeypatch.setattr(threads, "_cpu_times", lambda: next(readings))
    assert threads.free_cores(window=0.01) == max(1, min(cores, cores - (n_cpu - 1)))
    readings = iter([(0.0, 0.0), (0.0, 100.0 * n_cpu)])  # idle machine
    monkeypatch.setattr(threads, "_cpu_times", lambda: next(readings))
    assert threads.free_cores(window=0.01) == cores
    monkeypatch.setattr(threads, "_cpu_times", lambda: None)  # no /proc/stat: load average
    assert 1 <= threads.free_cores() <= cores


def test_set_threads_respects_omp_num_threads_and_waiting_threads_sleep(monkeypatch):
    assert "OMP_WAIT_POLICY" in os.environ  # boltzflow sets PASSIVE unless the user chose one
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        torch.set_num_threads(1)
        assert threads.set_threads(2) == 1  # the user's OMP_NUM_THREADS wins
        monkeypatch.delenv("OMP_NUM_THREADS")
        assert threads.set_threads(1) == 1
        monkeypatch.setattr(threads, "free_cores", lambda: 7)
        assert threads.set_threads(limit=2) == 2
    finally:
        torch.set_num_threads(before)


def test_thread_choices_and_torch_threads_restore_the_count(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        torch.set_num_threads(1)
        assert threads.thread_choices() == [1]  # the user's choice only
        with threads.torch_threads(3) as n:
            assert n == 1 == torch.get_num_threads()
        monkeypatch.delenv("OMP_NUM_THREADS")
        monkeypatch.setattr(threads, "free_cores", lambda: 2)
        assert threads.thread_choices() == [1, 2]
        monkeypatch.setattr(threads, "free_cores", lambda: 1)
        assert threads.thread_choices() == [1]
        with threads.torch_threads(2) as n:
            assert n == 2 == torch.get_num_threads()
        assert torch.get_num_threads() == 1
        with threads.torch_threads(None) as n:
            assert n == 1
    finally:
        torch.set_num_threads(before)


def test_the_molecule_run_trains_with_the_threads_its_probe_chose(monkeypatch, tmp_path):
    """run_molecular_demo: the MD (stubbed here) as it is, the training on ``train_threads``,
    and the count restored after."""
    import boltzflow.md
    from boltzflow import demo, runs
    from boltzflow.presets import QUICK_ALDP

    class Stop(Exception):
        pass

    seen = {}

    def fake_train(config, out, progress=True):
        seen["train"] = torch.get_num_threads()
        raise Stop

    def fake_simulate(system, out, **kwargs):
        seen["md"] = torch.get_num_threads()
        return [0] * 10

    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        torch.set_num_threads(1)
        monkeypatch.setattr(boltzflow.md, "simulate", fake_simulate)
        monkeypatch.setattr(runs, "train", fake_train)
        with pytest.raises(Stop):
            demo.run_molecular_demo(QUICK_ALDP, tmp_path, progress=False, echo=lambda s: None,
                                    train_threads=2)
        assert seen == {"md": 1, "train": 2} and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("module", ["boltzflow.cli", "molecules"])
def test_torch_loads_under_the_passive_wait_in_the_cli_and_the_molecules_bench(module):
    """libgomp reads OMP_WAIT_POLICY once, when torch loads it: the command line and
    ``bench/molecules.py`` (which must time what the command does) load torch after
    ``boltzflow`` set the passive wait (two spinning threads beside a busy neighbour ran a
    training step 7 times slower, docs/benchmarks.md)."""
    import subprocess
    import sys
    from pathlib import Path

    bench = Path(__file__).resolve().parents[1] / "bench"
    script = f"""
import importlib.abc, os, sys
seen = []
class Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "torch" and not seen:
            seen.append(os.environ.get("OMP_WAIT_POLICY"))
        return None
sys.meta_path.insert(0, Watch())
sys.path.insert(0, {str(bench)!r})
import {module}
print(seen)
"""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "['PASSIVE']"
