"""The dataset directory on disk: atomic writes, checksummed chunks, ``provenance.json``.

A dataset directory holds::

    provenance.json        what produced the frames, settings, and a record per chunk
    topology.pdb           the molecule (first configuration), for viewers and exports
    chunks/chunk-00000.npz frames: positions [k, n_atoms, 3] float32 nm, energies [k] float64 kT,
                           steps [k] int64 (MD step after equilibration), replica [k] int16
    state/                 MD restart states (only needed to extend or repair a simulation)

Every file is written to a temporary name and renamed, so a crash never leaves a half-written
file under its real name; a chunk is trusted only if its size and sha256 match its record.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BoltzflowError
from ..io import write_atomic

FORMAT = "boltzflow-dataset"
#: Bumped when the directory layout changes incompatibly.
FORMAT_VERSION = 1
PROVENANCE_NAME = "provenance.json"
TOPOLOGY_NAME = "topology.pdb"
CHUNK_DIR = "chunks"
STATE_DIR = "state"
CHUNK_KEYS = ("positions", "energies", "steps", "replica")


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    text = json.dumps(data, indent=2, sort_keys=False) + "\n"
    write_atomic(path, lambda f: f.write(text.encode()))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def chunk_name(index: int) -> str:
    """Path of chunk ``index`` relative to the dataset directory."""
    return f"{CHUNK_DIR}/chunk-{index:05d}.npz"


def write_chunk(root: Path, index: int, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """Write chunk ``index`` atomically; return its record (file, n_frames, size, sha256)."""
    buf = io.BytesIO()
    np.savez(buf, **{k: arrays[k] for k in CHUNK_KEYS})
    data = buf.getvalue()
    name = chunk_name(index)
    write_atomic(root / name, lambda f: f.write(data))
    return {
        "file": name,
        "n_frames": len(arrays["energies"]),
        "first_step": int(arrays["steps"][0]),
        "last_step": int(arrays["steps"][-1]),
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def chunk_problem(root: Path, record: dict[str, Any]) -> str | None:
    """Why the chunk file of ``record`` cannot be trusted, or ``None`` if it matches."""
    path = root / record["file"]
    if not path.is_file():
        return f"{record['file']} is missing"
    size = path.stat().st_size
    if size != record["size"]:
        return f"{record['file']} has {size} bytes, expected {record['size']} (truncated?)"
    if sha256_file(path) != record["sha256"]:
        return f"{record['file']} does not match its sha256 checksum (corrupt)"
    return None


def read_chunk(root: Path, record: dict[str, Any], *, verify: bool = True) -> dict[str, np.ndarray]:
    """The arrays of one chunk; with ``verify``, its size and checksum are checked first.

    Raises:
        BoltzflowError: the file is missing, truncated or corrupt.
    """
    if verify and (problem := chunk_problem(root, record)) is not None:
        raise BoltzflowError(
            f"dataset {root}: {problem}; rerun the same `boltzflow simulate` command to redo it"
        )
    try:
        with np.load(root / record["file"]) as z:
            arrays = {k: z[k] for k in CHUNK_KEYS}
    except Exception as exc:
        raise BoltzflowError(
            f"dataset {root}: {record['file']} is unreadable ({exc}); rerun the same "
            "`boltzflow simulate` command to redo it"
        ) from exc
    if len(arrays["energies"]) != record["n_frames"]:
        raise BoltzflowError(
            f"dataset {root}: {record['file']} holds {len(arrays['energies'])} frames, "
            f"its record says {record['n_frames']}"
        )
    return arrays


def read_provenance(root: Path) -> dict[str, Any]:
    """``provenance.json`` of the dataset at ``root``.

    Raises:
        BoltzflowError: not a dataset directory, unreadable, or another format version.
    """
    path = root / PROVENANCE_NAME
    if not path.is_file():
        what = "does not exist" if not root.exists() else f"has no {PROVENANCE_NAME}"
        raise BoltzflowError(f"{root} is not a boltzflow dataset ({what}); run simulate first")
    try:
        prov = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BoltzflowError(f"{path} is unreadable ({exc})") from exc
    if prov.get("format") != FORMAT or prov.get("format_version") != FORMAT_VERSION:
        raise BoltzflowError(
            f"{path} is format {prov.get('format')!r} version {prov.get('format_version')!r}; "
            f"this boltzflow reads {FORMAT!r} version {FORMAT_VERSION}"
        )
    return prov
