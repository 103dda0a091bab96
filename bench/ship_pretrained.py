"""Package a trained ``tbg-ic`` run as the pretrained model shipped inside boltzflow.

Writes ``src/boltzflow/pretrained/tbg-ic-dipeptides/``: the run's config (dataset path
cleared: the shipped model needs no dataset), a weights-only checkpoint (no optimizer state),
``provenance.json`` (dataset and its MD settings, training command and time, the held-out
evaluation, checksum) and the MD frames of the held-out peptides (``references/``), so that
``boltzflow evaluate`` of a zero-shot sample has a reference right after install.

    .venv/bin/python bench/ship_pretrained.py --run runs/bench-tbg-ic-h \\
        --data data/dipeptides-pilot --command "python bench/transferable_ic.py ..."
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
KEEP = ("ess", "ess_samples", "fraction_valid", "energy_w2_model", "energy_w2_reweighted",
        "torus_w2_model", "torus_w2_reweighted", "dF_phi_md", "dF_phi_reweighted")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="trained tbg-ic run directory")
    parser.add_argument("--data", type=Path, required=True, help="its dipeptide dataset")
    parser.add_argument("--command", required=True, help="the command that trained it")
    parser.add_argument("--name", default="tbg-ic")
    args = parser.parse_args()

    out = ROOT / MODELS[args.name]
    out.mkdir(parents=True, exist_ok=True)
    state = load_checkpoint(args.run / "checkpoint.pt")
    slim = {k: state[k] for k in ("version", "step", "model", "elapsed", "metadata")
            if k in state}
    slim["metadata"] = {**slim["metadata"], "dataset": args.data.name}
    torch.save(slim, out / "checkpoint.pt")
    config = runs.read_run_config(args.run).to_dict()
    config["system"]["dataset"] = ""
    (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    index = load_index(args.data)
    (out / REFERENCES).mkdir(exist_ok=True)
    for seq in index.sequences("test"):
        frames = index.dataset(seq).positions.to(torch.float32).numpy()
        np.savez_compressed(out / REFERENCES / f"{runs.slug('dipeptide:' + seq)}.npz",
                            positions=frames, system_id=f"dipeptide:{seq}")
    meta = json.loads((args.data / "index.json").read_text())
    evaluation = {}
    table = args.run / "eval-test" / "evaluation.json"
    if table.exists():
        data = json.loads(table.read_text())
        evaluation = {
            "split": "test", "n_samples": data["n_samples"], "means": data["means"],
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
                    "train": index.sequences("train"), "test": index.sequences("test")},
        "references": ("plain MD of the held-out peptides from the same dataset "
                       f"({meta['md']['ns']:g} ns each, a frame every "
                       f"{meta['md']['frame_interval_ps']:g} ps)"),
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
