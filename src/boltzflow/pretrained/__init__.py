"""Pretrained models shipped inside the package: sampled right after install, nothing downloaded.

A shipped model is a run directory in the package (``config.yaml``, a weights-only
``checkpoint.pt``, ``provenance.json``: dataset, command, step, metrics, checksum; and
``references/<id>.npz``: small MD references of a few held-out molecules). :func:`install`
copies it into a writable run directory, where ``boltzflow sample`` / ``evaluate`` use it like
any trained run::

    boltzflow sample --model tbg-ic --system dipeptide:NY -n 10000   # → runs/pretrained-tbg-ic
    boltzflow evaluate --run runs/pretrained-tbg-ic --system dipeptide:NY

or, from Python, ``run = boltzflow.pretrained.load("tbg-ic")``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import BoltzflowError

__all__ = ["DEFAULT_RUN", "MODELS", "describe", "install", "load", "package_dir", "provenance"]

#: Shipped models: the ``--model`` name → its directory in this package.
MODELS = {"tbg-ic": "tbg-ic-dipeptides"}
#: Where ``boltzflow sample --model NAME`` puts the run when no ``--run`` is given.
DEFAULT_RUN = "runs/pretrained-{name}"
PROVENANCE_NAME = "provenance.json"
#: Shipped MD references, ``references/<slug of the system id>.npz`` (``positions``), read by
#: :func:`boltzflow.runs.reference_frames` of an installed run.
REFERENCES = "references"
#: The files of a shipped run copied by :func:`install` (references come with their folder).
RUN_FILES = ("config.yaml", "checkpoint.pt", PROVENANCE_NAME)


def _check_name(name: str) -> str:
    if name not in MODELS:
        raise BoltzflowError(f"no pretrained model {name!r}; shipped: {', '.join(MODELS)}")
    return MODELS[name]


def package_dir(name: str) -> Path:
    """The shipped (read-only) run directory of model ``name``."""
    folder = resources.files(__name__) / _check_name(name)
    path = Path(str(folder))
    if not (path / "checkpoint.pt").exists():
        raise BoltzflowError(f"the pretrained {name!r} model is missing from this installation "
                             f"({path}); reinstall boltzflow")
    return path


def provenance(name: str) -> dict[str, Any]:
    """What the shipped model is: dataset, training command, step, metrics, checksum."""
    return json.loads((package_dir(name) / PROVENANCE_NAME).read_text())


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def install(name: str, out: str | Path | None = None) -> Path:
    """Copy the shipped model ``name`` into the run directory ``out`` (default
    ``runs/pretrained-NAME``) and return it; an ``out`` that already holds this model is used
    as it is (samples and evaluations kept).

    Raises:
        BoltzflowError: unknown model, a damaged shipped checkpoint (checksum), or ``out``
            holding another run.
    """
    from ..io import prepare_out_dir

    source = package_dir(name)
    info = provenance(name)
    out = Path(out or DEFAULT_RUN.format(name=name))
    target = out / "checkpoint.pt"
    ours = (out / PROVENANCE_NAME).exists()
    if (target.exists() and not (ours and _sha256(target) == info["sha256"])) or (
            (out / "config.yaml").exists() and not ours):
        raise BoltzflowError(f"{out} already holds another run; give another --run for the "
                             f"pretrained {name!r} model")
    if target.exists():
        return out
    if _sha256(source / "checkpoint.pt") != info["sha256"]:
        raise BoltzflowError(f"the shipped {name!r} checkpoint does not match its checksum "
                             f"({source}); reinstall boltzflow")
    prepare_out_dir(out)
    if (source / REFERENCES).exists():
        shutil.copytree(source / REFERENCES, out / REFERENCES, dirs_exist_ok=True)
    for file in (PROVENANCE_NAME, "config.yaml", "checkpoint.pt"):  # the checkpoint last
        part = out / f"{file}.{os.getpid()}.part"  # torchrun ranks may install at once
        shutil.copyfile(source / file, part)
        part.replace(out / file)
    return out


def load(name: str, out: str | Path | None = None) -> Any:
    """:func:`install` the model and load it (a :class:`boltzflow.runs.Run`)."""
    from .. import runs

    return runs.load_run(install(name, out))


def describe(name: str) -> str:
    """A few lines on the shipped model ``name``: what it was trained on, how, and how it did
    on the peptides it never saw (``boltzflow info NAME``)."""
    info = provenance(name)
    data, md = info["dataset"], info["dataset"]["md"]
    lines = [
        f"pretrained model {name!r} ({info['kind']}), shipped with boltzflow "
        f"{info['boltzflow_version']} on {info['created']}",
        f"  training set: {len(data['train'])} dipeptides of {data['name']!r} ({data['forcefield']}"
        f" + {data['solvent']}, {data['temperature']:g} K; {md['ns']:g} ns MD each, a frame every "
        f"{md['frame_interval_ps']:g} ps)",
        f"  held out: {', '.join(data['test'])}",
        f"  trained: {info['step']} steps, {info['train_seconds'] / 60:.0f} CPU minutes: "
        f"{info['command']}",
    ]
    means = info.get("evaluation", {}).get("means")
    if means:
        n = info["evaluation"]["n_samples"]
        lines.append(f"  held-out mean ({n} samples each): ESS {means['ess']:.2%} "
                     f"({means['ess_samples']:.1f} effective samples), valid "
                     f"{means['fraction_valid']:.1%}")
    if info.get("references"):
        lines.append(f"  reference MD shipped: {info['references']}")
    lines.append(f"  checkpoint sha256 {info['sha256']}")
    return "\n".join(lines)
