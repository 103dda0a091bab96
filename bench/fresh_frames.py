"""Benchmark: does a trained flow cover fresh MD frames as well as the frames it learned?

For each ``--run`` (an ``internal`` run trained on an MD dataset), the log-weights
``a = −u(x) − log q(x) − log Ẑ`` (``Ẑ`` the mean weight of the run's own samples, so that
``E_q[e^a] = 1``) of three sets of MD frames: 2,000 of its training frames, its held-out split
(the MD's last frames) and frames of ``--md`` later than ``--after-ps`` (the same MD extended,
never seen in training). Prints each set's mean and standard deviation of ``a`` and
``1 / E_p[e^a]``: the Kish ESS fraction that samples of the flow would have if these frames
were the Boltzmann distribution (``ESS/n → Z / E_p[w]``). A flow that learned the distribution
gives the same numbers for the three sets; one that learned its frames covers fresh frames
worse (higher ``a``), and its ESS follows the fresh frames.

    cp -r RUN/md runs/md-ext   # then extend the copy with the same simulate settings
    .venv/bin/python bench/fresh_frames.py --run RUN --md runs/md-ext --after-ps 4200
    .venv/bin/python bench/fresh_frames.py --run RUN --blocks-ps 5   # along the time axis

``--blocks-ps B`` instead prints the mean ``a`` of consecutive B-ps blocks of the last 20 ps of
training frames and of the held-out frames after them: a flow that learned its frames shows a
step where training ends.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

from boltzflow import runs
from boltzflow.data import Dataset


def log_weights(run: runs.Run, x: np.ndarray, log_z: float) -> torch.Tensor:
    """``−u − log q − log Ẑ`` of frames ``x`` (float64)."""
    flow = run.model.flow_for(run.system).double()
    energy = run.model.energy_of(run.system)
    with torch.no_grad():
        xt = torch.as_tensor(np.asarray(x), dtype=torch.float64)
        return -(energy.energy(xt) + flow.log_prob(xt)) - log_z


def log_z_of(path: str) -> float:
    """``log Ẑ``: the log of the mean weight of a run's own (finite) samples."""
    log_w = np.load(Path(path) / "samples.npz")["log_w"]
    log_w = torch.as_tensor(log_w[np.isfinite(log_w)], dtype=torch.float64)
    return float(torch.logsumexp(log_w, 0) - math.log(len(log_w)))


def along_time(path: str, block_ps: float) -> None:
    """Mean ``a`` by ``block_ps`` blocks: the last 20 ps of training frames, then the held-out
    frames (the split keeps time order: the held-out frames follow the training ones)."""
    run = runs.load_run(path)
    interval = float(Dataset.load(run.config.system.data).provenance["frame_interval_ps"])
    per = max(1, round(block_ps / interval))
    data = np.load(Path(path) / "data.npz")
    log_z = log_z_of(path)
    for name, x in (("training, last 20 ps", data["train"][-round(20 / interval):]),
                    ("held-out", data["test"])):
        a = log_weights(run, x, log_z)
        blocks = [f"{float(b.mean()):.2f}" for b in a.split(per)]
        print(f"{path} {name}, mean a by {block_ps:g} ps: {' '.join(blocks)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", required=True, help="a trained run (repeat)")
    parser.add_argument("--md", type=Path, help="the MD extended beyond training")
    parser.add_argument("--after-ps", type=float,
                        help="frames later than this are fresh (the training MD's length)")
    parser.add_argument("--blocks-ps", type=float,
                        help="only the mean a along time, in blocks of this many ps")
    parser.add_argument("-n", type=int, default=2000, help="frames per set")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.blocks_ps:
        for path in args.run:
            along_time(path, args.blocks_ps)
        return
    if args.md is None or args.after_ps is None:
        parser.error("--md and --after-ps are needed (or --blocks-ps)")
    md = Dataset.load(args.md)
    time_ps = np.asarray(md.time_ps)
    fresh = np.asarray(md.positions)[time_ps > args.after_ps + 1e-6]
    if not len(fresh):
        parser.error(f"{args.md} has no frames after {args.after_ps} ps: extend it first")
    print(f"fresh frames: {len(fresh)} after {args.after_ps:g} ps of {args.md}\n")
    print("| run | frames | n | mean a | sd a | 1 / E_p[e^a] |")
    print("|---|---|---|---|---|---|")
    for path in args.run:
        run = runs.load_run(path)
        log_z = log_z_of(path)
        data = np.load(Path(path) / "data.npz")
        train = data["train"][:: max(1, len(data["train"]) // args.n)][: args.n]
        every = max(1, len(fresh) // args.n)
        for name, x in (("training", train), ("held-out (last frames)", data["test"][: args.n]),
                        ("fresh", fresh[::every][: args.n])):
            a = log_weights(run, x, log_z)
            print(f"| {path} | {name} | {len(x)} | {a.mean():.2f} | {a.std():.2f} | "
                  f"{1 / a.exp().mean():.1%} |", flush=True)


if __name__ == "__main__":
    main()
