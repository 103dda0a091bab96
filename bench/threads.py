"""Benchmark: a fixed training run alone and beside a CPU-bound neighbour, per thread setting.

Times ``boltzflow train --system dw4 --model cnf --steps 100 --seed 1`` (wall clock of the
whole command) under each setting below, once on its own and once while a single-threaded
busy loop runs beside it, and prints a side-by-side table with the slowdown. The machine's
load average is printed before and after: on a shared machine, other users are neighbours too.

    .venv/bin/python bench/threads.py               # the four settings (about 6-10 min)
    .venv/bin/python bench/threads.py --steps 20    # a quicker look

Settings:

* ``before``: two threads, libgomp's default spin-wait (``GOMP_SPINCOUNT=300000``): what
  ``boltzflow train`` did before it read the free cores and set ``OMP_WAIT_POLICY=PASSIVE``.
* ``2 threads, passive``: two threads, waiting threads sleep (``OMP_WAIT_POLICY=PASSIVE``, the
  default now).
* ``auto (default)``: the default now: the free cores (``boltzflow.threads.free_cores``).
* ``1 thread``: ``OMP_NUM_THREADS=1``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SETTINGS = {
    "before (2 threads, spin)": {"OMP_NUM_THREADS": "2", "GOMP_SPINCOUNT": "300000"},
    "2 threads, passive": {"OMP_NUM_THREADS": "2"},
    "auto (default)": {},
    "1 thread": {"OMP_NUM_THREADS": "1"},
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


def neighbour() -> subprocess.Popen:
    """A single-threaded busy loop (the CPU-bound neighbour)."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--settings", nargs="*", default=list(SETTINGS),
                        help="which settings to time (names as in the table)")
    args = parser.parse_args()
    print(f"cores {os.cpu_count()}, load average before {os.getloadavg()}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, name in enumerate(args.settings):
            alone = train_seconds(SETTINGS[name], args.steps, Path(tmp) / f"a{i}")
            busy = neighbour()
            try:
                time.sleep(1.0)
                beside = train_seconds(SETTINGS[name], args.steps, Path(tmp) / f"b{i}")
            finally:
                busy.kill()
                busy.wait()
            rows.append((name, alone, beside))
            print(f"{name}: alone {alone:.1f} s, beside a neighbour {beside:.1f} s", flush=True)
    print(f"load average after {os.getloadavg()}\n")
    print(f"`boltzflow train --system dw4 --model cnf --steps {args.steps} --seed 1`, wall clock\n")
    print("| setting | alone (s) | beside a busy neighbour (s) | slowdown |")
    print("|---|---|---|---|")
    for name, alone, beside in rows:
        print(f"| {name} | {alone:.1f} | {beside:.1f} | {beside / alone:.1f}× |")


if __name__ == "__main__":
    main()
