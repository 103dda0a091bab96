"""Benchmark: a fixed training run alone and beside a CPU-bound neighbour, per thread setting.

Times ``boltzflow train --system dw4 --model cnf --steps 100 --seed 1`` (wall clock of the
whole command) under each setting below, once on its own and once while a single-threaded
busy loop runs beside it, and prints a side-by-side table with the slowdown. The machine's
load average is printed before and after: on a shared machine, other users are neighbours too.

    .venv/bin/python bench/threads.py               # the four settings (about 6-10 min)
    .venv/bin/python bench/threads.py --steps 20    # a quicker look
    .venv/bin/python bench/threads.py --probe peptide:ACE-TRP-GLY-NME   # the one command's step

With ``--probe SYSTEM`` it times instead what the one command's probe times
(``boltzflow.demo.measure_speeds``: a training step of the flow it plans for SYSTEM, e.g. 512
frames and compiled splines above 30 atoms) under each setting; under ``auto`` the probe tries
one thread and the free cores and keeps the faster, and the table says which.

Settings:

* ``before``: two threads, libgomp's default spin-wait (``GOMP_SPINCOUNT=300000``): what
  ``boltzflow train`` did before it read the free cores and set ``OMP_WAIT_POLICY=PASSIVE``.
* ``2 threads, passive``: two threads, waiting threads sleep (``OMP_WAIT_POLICY=PASSIVE``, the
  default now).
* ``auto (default)``: the default now: the free cores (``boltzflow.threads.free_cores``).
* ``1 thread``: ``OMP_NUM_THREADS=1``.
* ``auto, spin``: the free cores with libgomp's spin-wait (``GOMP_SPINCOUNT=300000`` overrides
  the passive wait): what a user whose machine is their own may choose.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

SETTINGS = {
    "before (2 threads, spin)": {"OMP_NUM_THREADS": "2", "GOMP_SPINCOUNT": "300000"},
    "2 threads, passive": {"OMP_NUM_THREADS": "2"},
    "auto (default)": {},
    "1 thread": {"OMP_NUM_THREADS": "1"},
    "auto, spin": {"GOMP_SPINCOUNT": "300000"},
}
CLEARED = ("OMP_NUM_THREADS", "GOMP_SPINCOUNT", "OMP_WAIT_POLICY")


def train_seconds(env: dict[str, str], steps: int, out: Path) -> float:
    """Wall-clock seconds of one ``boltzflow train`` run (a fresh run directory)."""
    full = {k: v for k, v in os.environ.items() if k not in CLEARED} | env
    cmd = [str(Path(sys.executable).parent / "boltzflow"), "train", "--system", "dw4", "--model",
           "cnf", "--steps", str(steps), "--seed", "1", "--out", str(out), "--no-progress"]
    t0 = time.perf_counter()
    subprocess.run(cmd, env=full, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


PROBE = """
import json, sys
from boltzflow import runs
from boltzflow.demo import measure_speeds
from boltzflow.models import config_with
config = config_with({}, {"model": "internal", "system.id": sys.argv[1]})
speeds = measure_speeds(runs.resolve_system(config), config)
print(json.dumps({"step": speeds.step_seconds, "threads": speeds.threads,
                  "tried": speeds.step_seconds_by_threads}))
"""


def probe_step(env: dict[str, str], system: str) -> tuple[float, str]:
    """The one command's probe of ``system`` under ``env``: seconds per training step, and
    the thread counts it tried (the one it keeps starred)."""
    full = {k: v for k, v in os.environ.items() if k not in CLEARED} | env
    out = subprocess.run([sys.executable, "-c", PROBE, system], env=full, check=True,
                         capture_output=True, text=True).stdout
    got = json.loads(out.strip().splitlines()[-1])
    tried = ", ".join(f"{n}{'*' if int(n) == got['threads'] else ''}: {t:.3f}"
                      for n, t in got["tried"].items())
    return got["step"], tried


def neighbour() -> subprocess.Popen:
    """A single-threaded busy loop (the CPU-bound neighbour)."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def alone_and_beside(measure: Callable[[str], T]) -> tuple[T, T]:
    """``measure("a")`` alone, then ``measure("b")`` while a busy neighbour runs."""
    alone = measure("a")
    busy = neighbour()
    try:
        time.sleep(1.0)
        beside = measure("b")
    finally:
        busy.kill()
        busy.wait()
    return alone, beside


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--settings", nargs="*", default=list(SETTINGS),
                        help="which settings to time (names as in the table)")
    parser.add_argument("--probe", metavar="SYSTEM",
                        help="time the one command's probe step of SYSTEM instead")
    args = parser.parse_args()
    if args.probe:
        return probe_table(args)
    print(f"cores {os.cpu_count()}, load average before {os.getloadavg()}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, name in enumerate(args.settings):
            alone, beside = alone_and_beside(
                lambda tag, i=i, name=name: train_seconds(SETTINGS[name], args.steps,
                                                          Path(tmp) / f"{tag}{i}"))
            rows.append((name, alone, beside))
            print(f"{name}: alone {alone:.1f} s, beside a neighbour {beside:.1f} s", flush=True)
    print(f"load average after {os.getloadavg()}\n")
    print(f"`boltzflow train --system dw4 --model cnf --steps {args.steps} --seed 1`, wall clock\n")
    print("| setting | alone (s) | beside a busy neighbour (s) | slowdown |")
    print("|---|---|---|---|")
    for name, alone, beside in rows:
        print(f"| {name} | {alone:.1f} | {beside:.1f} | {beside / alone:.1f}× |")


def probe_table(args: argparse.Namespace) -> None:
    """``--probe``: the one command's step per setting, alone and beside a busy neighbour."""
    print(f"cores {os.cpu_count()}, load average before {os.getloadavg()}", flush=True)
    rows = []
    for name in args.settings:
        alone, beside = alone_and_beside(
            lambda tag, name=name: probe_step(SETTINGS[name], args.probe))
        rows.append((name, alone, beside))
        print(f"{name}: alone {alone}, beside a neighbour {beside}", flush=True)
    print(f"load average after {os.getloadavg()}\n")
    print(f"seconds per training step of the one command's probe (`measure_speeds`) for "
          f"{args.probe}; threads tried: seconds (* = kept)\n")
    print("| setting | alone (s) | threads tried | beside a busy neighbour (s) | threads tried |"
          " slowdown |")
    print("|---|---|---|---|---|---|")
    for name, (a, ta), (b, tb) in rows:
        print(f"| {name} | {a:.3f} | {ta} | {b:.3f} | {tb} | {b / a:.1f}× |")


if __name__ == "__main__":
    main()
