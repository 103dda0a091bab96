"""Benchmark: fine-tune a trained ``tbg-ic`` run for more steps, with or without the reverse KL
on the training peptides' energies, and evaluate the held-out split (the A/B that decides
whether the energy term stays: issue 15 keeps it only if it helps held-out ESS).

    python bench/finetune_tbg_ic.py --from runs/bench-tbg-ic-v2 --out runs/ft-nll --steps 2600
    python bench/finetune_tbg_ic.py --from runs/bench-tbg-ic-v2 --out runs/ft-kl --steps 2600 --w-kl 1
    python bench/finetune_tbg_ic.py --from runs/ft-kl-3600 --out runs/ft-lv --steps 4600 --w-lv 1

Both continue the same checkpoint with the same learning-rate schedule (cosine over
``--steps``); prints the held-out table and the training time.

With ``--minutes M`` the total is chosen to fit a wall-clock budget instead: 30 steps are run
first (at the end of a cosine over them: the learning rate's floor), the last 10 timed by the
training log's clock (set-up excluded), and ``--steps`` becomes what the rest of the budget
allows. On a GPU machine, train only
(``--device cuda --minutes 6 --no-eval``) and table the held-out split later on a CPU
(``--eval-only`` with the same ``--out``).
"""

from __future__ import annotations

import argparse
import csv
import shutil
import time
from pathlib import Path

import torch

from boltzflow import runs
from boltzflow.analysis.split import format_table
from boltzflow.models import parse_config
from boltzflow.training import load_checkpoint


def _seconds_per_step(log: Path) -> float:
    """Training seconds per step between the last two rows of a training log (the log's
    ``time`` is training wall-clock, without the set-up of a call)."""
    *_, before, last = csv.DictReader(log.open())
    return (float(last["time"]) - float(before["time"])) / (int(last["step"]) - int(before["step"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="source", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=0, help="total steps (≥ the source's)")
    parser.add_argument("--minutes", type=float, default=0.0,
                        help="instead of --steps: train for about this many wall minutes")
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None)
    parser.add_argument("--checkpoint-every", type=int, default=0)
    parser.add_argument("--no-eval", action="store_true", help="skip the held-out table")
    parser.add_argument("--eval-only", action="store_true", help="only the held-out table")
    parser.add_argument("--w-kl", type=float, default=0.0)
    parser.add_argument("--w-lv", type=float, default=0.0,
                        help="weight of the log-weight variance of the training frames")
    parser.add_argument("--kl-peptides", type=int, default=4)
    parser.add_argument("--kl-samples", type=int, default=16)
    parser.add_argument("-n", "--n-samples", type=int, default=1000, help="per held-out peptide")
    args = parser.parse_args()
    if not (args.steps or args.minutes or args.eval_only):
        parser.error("give --steps or --minutes")
    torch.set_num_threads(1)
    if not args.out.exists():
        shutil.copytree(args.source, args.out, ignore=shutil.ignore_patterns(
            "eval-*", "refine-bench*", "systems"))
    t0 = time.perf_counter()
    if not args.eval_only:
        config = runs.read_run_config(args.out).to_dict()
        config["tbg-ic"].update(w_kl=args.w_kl, w_lv=args.w_lv, kl_peptides=args.kl_peptides,
                                kl_samples=args.kl_samples)
        if args.device:
            config["train"]["device"] = args.device
        if args.checkpoint_every:
            config["train"]["checkpoint_every"] = args.checkpoint_every
        steps = args.steps
        if args.minutes:
            start = int(load_checkpoint(args.out / "checkpoint.pt")["step"])
            config["train"]["steps"] = start + 30
            runs.train(parse_config(config, source="finetune"), args.out, progress=False)
            per_step = _seconds_per_step(args.out / "train_log.csv")
            left = args.minutes * 60 - (time.perf_counter() - t0)
            steps = start + 30 + max(0, int(left / per_step))
            print(f"{per_step:.3f} s a step (the training log's clock): training to step "
                  f"{steps}", flush=True)
        config["train"]["steps"] = steps
        runs.train(parse_config(config, source="finetune"), args.out, progress=True)
    seconds = time.perf_counter() - t0
    if args.no_eval:
        print(f"fine-tuning to step {steps} (w_kl {args.w_kl:g}, w_lv {args.w_lv:g}): "
              f"{seconds:.0f} s this call")
        return
    run = runs.load_run(args.out, changes={"train.device": "cpu"})
    result = runs.evaluate_split(run, "test", n_samples=args.n_samples, echo=print)
    print(format_table(result.rows, result.means))
    print(f"step {run.model.info['step']} (w_kl {args.w_kl:g}, w_lv {args.w_lv:g}): "
          f"{seconds:.0f} s this call")


if __name__ == "__main__":
    main()
