"""How many CPU threads to use on a machine that others may be using too."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["free_cores", "set_threads", "thread_choices", "torch_threads"]


def _cpu_times() -> tuple[float, float] | None:
    """``(busy, total)`` jiffies of all CPUs from ``/proc/stat``, or ``None`` off Linux."""
    try:
        with open("/proc/stat") as f:
            fields = [float(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def free_cores(window: float = 0.2) -> int:
    """Cores of this process's affinity mask that other processes are not busy on, at least 1.

    Measured over ``window`` seconds from ``/proc/stat`` (call it while this process is idle);
    where that is unavailable, the cores minus the 1-minute load average.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    first = _cpu_times()
    if first is not None and window > 0:
        time.sleep(window)
        second = _cpu_times()
        n_cpu = os.cpu_count() or cores
        busy = (second[0] - first[0]) / max(second[1] - first[1], 1e-9) * n_cpu
    else:
        try:
            busy = os.getloadavg()[0]
        except (AttributeError, OSError):
            busy = 0.0
    return max(1, min(cores, round(cores - busy)))


def set_threads(n: int | None = None, *, limit: int = 4) -> int:
    """Torch threads: ``n``, else the free cores (at most ``limit``), unless ``OMP_NUM_THREADS``
    is set; returns the count in use.

    More threads than free cores is 5-20× slower on small models (OpenMP threads wait for the
    one that lost its core); ``boltzflow/__init__`` also sets ``OMP_WAIT_POLICY=PASSIVE`` so
    that waiting threads sleep instead of spinning.
    """
    import torch

    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(n or min(limit, free_cores()))
    return torch.get_num_threads()


def thread_choices(limit: int = 4) -> list[int]:
    """Torch thread counts worth timing here: one and the free cores (at most ``limit``), or
    only the current count where ``OMP_NUM_THREADS`` says what the user wants."""
    import torch

    if "OMP_NUM_THREADS" in os.environ:
        return [torch.get_num_threads()]
    return sorted({1, min(limit, free_cores())})


@contextmanager
def torch_threads(n: int | None) -> Iterator[int]:
    """Run the block with ``n`` torch threads (``None``, or ``OMP_NUM_THREADS`` set: as they
    are), restoring the count afterwards; yields the count in use."""
    import torch

    before = torch.get_num_threads()
    if n and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
