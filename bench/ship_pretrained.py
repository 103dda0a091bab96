"""Package a trained ``tbg-ic`` run as the pretrained model shipped inside boltzflow.

Writes ``src/boltzflow/pretrained/tbg-ic-dipeptides/``: the run's config (dataset path
cleared: the shipped model needs no dataset), a weights-only checkpoint (no optimizer state),
``provenance.json`` (dataset and its MD settings, training command and time, the held-out
evaluation, checksum) and the MD frames of the held-out peptides (``references/``), so that
``boltzflow evaluate`` of a zero-shot sample has a reference right after install.

    .venv/bin/python bench/ship_pretrained.py --run runs/bench-tbg-ic-h \\
        --data data/dipeptides-pilot --command "python bench/transferable_ic.py ..."

``--upgrade-keys`` ships a key-version-2 run at key version 3 (``TBGICKind.upgrade_keys``: the
statistics of the new keys fitted on ``--data``'s training split, weights and every other
statistic unchanged). ``--references DIR`` takes the held-out peptides' MD from another
dipeptide dataset (e.g. parallel tempering, ``boltzflow dataset dipeptides --split test
--replicas 4``), thinned to ``--reference-frames`` evenly spaced frames;
``--keep-references`` keeps the references already shipped (and their description and
held-out list: for a training set without test peptides, as ``data/dipeptides-dense-120``). The held-out evaluation recorded is
``RUN/eval-test`` or ``--evaluation DIR`` (e.g. ``RUN/eval-side-10000`` of
``bench/transferable.py --model tbg-ic --run RUN``).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
import yaml

from boltzflow import runs
from boltzflow.data.dipeptides import load_index
from boltzflow.pretrained import MODELS, PROVENANCE_NAME, REFERENCES
from boltzflow.training import load_checkpoint
from boltzflow.version import __version__

ROOT = Path(__file__).resolve().parents[1] / "src" / "boltzflow" / "pretrained"
#: The metrics of each held-out peptide kept in the provenance summary.
KEEP = ("ess", "ess_samples", "log_w_spread", "fraction_valid", "energy_w2_model",
        "energy_w2_reweighted", "torus_w2_model", "torus_w2_reweighted", "dF_phi_md",
        "dF_phi_reweighted")


def _describe_references(args: argparse.Namespace, meta: dict) -> str:
    """What the shipped reference MD is, in one line."""
    if args.references is None:
        return (f"plain MD of the held-out peptides from the same dataset ({meta['md']['ns']:g} "
                f"ns each, a frame every {meta['md']['frame_interval_ps']:g} ps)")
    md = json.loads((args.references / "index.json").read_text())["md"]
    kind = (f"the {meta['temperature']:g} K replica of parallel tempering ({md['replicas']} "
            f"replicas up to {md['t_max']:g} K)" if md.get("replicas", 1) > 1 else "plain MD")
    return (f"{kind} of the held-out peptides ({args.references.name}: {md['ns']:g} ns each, "
            f"{args.reference_frames} evenly spaced frames kept)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="trained tbg-ic run directory")
    parser.add_argument("--data", type=Path, required=True, help="its dipeptide dataset")
    parser.add_argument("--command", required=True, help="the command that trained it")
    parser.add_argument("--name", default="tbg-ic")
    parser.add_argument("--upgrade-keys", action="store_true",
                        help="ship a key-version-2 run at key version 3")
    parser.add_argument("--references", type=Path, default=None,
                        help="dataset holding the held-out peptides' reference MD [--data]")
    parser.add_argument("--reference-frames", type=int, default=500)
    parser.add_argument("--keep-references", action="store_true",
                        help="keep the shipped references, their description and held-out list")
    parser.add_argument("--evaluation", type=Path, default=None,
                        help="the held-out evaluation to record [RUN/eval-test]")
    args = parser.parse_args()
    if args.keep_references and args.references:
        parser.error("give --references or --keep-references, not both")

    out = ROOT / MODELS[args.name]
    old = json.loads((out / PROVENANCE_NAME).read_text()) if args.keep_references else None
    if old is not None and not (out / REFERENCES).is_dir():
        raise SystemExit(f"--keep-references: {out / REFERENCES} does not exist")
    out.mkdir(parents=True, exist_ok=True)
    state = load_checkpoint(args.run / "checkpoint.pt")
    slim = {k: state[k] for k in ("version", "step", "model", "elapsed", "metadata")
            if k in state}
    slim["metadata"] = {**slim["metadata"], "dataset": args.data.name}
    if args.upgrade_keys:
        from boltzflow.models.tbg_ic import TBGICKind

        slim["metadata"] = TBGICKind.upgrade_keys(slim["metadata"], args.data)
    torch.save(slim, out / "checkpoint.pt")
    config = runs.read_run_config(args.run).to_dict()
    config["system"]["dataset"] = ""
    (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    index = load_index(args.data)
    ref_index = load_index(args.references) if args.references else index
    (out / REFERENCES).mkdir(exist_ok=True)
    for seq in index.sequences("test") if old is None else []:
        frames = ref_index.dataset(seq).positions.to(torch.float32).numpy()
        if len(frames) > args.reference_frames:
            frames = frames[np.linspace(0, len(frames) - 1, args.reference_frames).round()
                            .astype(int)]
        np.savez_compressed(out / REFERENCES / f"{runs.slug('dipeptide:' + seq)}.npz",
                            positions=frames, system_id=f"dipeptide:{seq}")
    meta = json.loads((args.data / "index.json").read_text())
    evaluation = {}
    table = (args.evaluation or args.run / "eval-test") / "evaluation.json"
    if args.evaluation and not table.exists():
        raise SystemExit(f"--evaluation: {table} does not exist")
    if table.exists():
        data = json.loads(table.read_text())
        evaluation = {
            "split": "test", "n_samples": data["n_samples"], "means": data["means"],
            "directory": table.parent.relative_to(args.run.parent).as_posix()
            if table.parent.is_relative_to(args.run.parent) else table.parent.as_posix(),
            "peptides": {seq: {k: m.get(k) for k in KEEP} for seq, m in data["peptides"].items()},
        }
    record = {
        "name": args.name,
        "kind": slim["metadata"]["kind"],
        "step": int(slim.get("step", 0)),
        "train_seconds": float(slim.get("elapsed", 0.0)),
        "command": args.command,
        "dataset": {"name": args.data.name, "forcefield": meta["forcefield"],
                    "solvent": meta["solvent"], "temperature": meta["temperature"],
                    "md": meta["md"],
                    "train": index.sequences("train"),
                    "test": index.sequences("test") if old is None else old["dataset"]["test"]},
        "references": _describe_references(args, meta) if old is None else old["references"],
        "evaluation": evaluation,
        "sha256": hashlib.sha256((out / "checkpoint.pt").read_bytes()).hexdigest(),
        "boltzflow_version": __version__,
        "created": datetime.date.today().isoformat(),
    }
    (out / PROVENANCE_NAME).write_text(json.dumps(record, indent=2) + "\n")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{out}: {size / 1e6:.1f} MB (checkpoint {(out / 'checkpoint.pt').stat().st_size / 1e6:.1f}"
          f" MB, step {record['step']})")


if __name__ == "__main__":
    main()
