"""Thread counts from the cores that are actually free."""

from __future__ import annotations

import os

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
