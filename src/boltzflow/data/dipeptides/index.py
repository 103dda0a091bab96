"""The index of a dipeptide dataset directory: ``index.json`` and the entries it lists.

A dataset directory ``DIR`` (see ``docs/dipeptides.md``) holds::

    DIR/index.json   what was built (format, force field, MD settings) and one entry per
                     completed peptide: sequence, system id, path, split, frames, atoms
    DIR/AC/          the MD dataset of dipeptide:AC written by boltzflow.md.simulate
    DIR/KI/          ...
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import BoltzflowError
from .. import files
from .catalogue import FORCEFIELD, SOLVENT, TEMPERATURE

if TYPE_CHECKING:
    from ..dataset import Dataset

INDEX_NAME = "index.json"
INDEX_FORMAT = "boltzflow-dipeptides"
#: Bumped when ``index.json`` changes incompatibly.
INDEX_FORMAT_VERSION = 1


@dataclass(frozen=True)
class PeptideEntry:
    """One completed peptide of a dipeptide dataset (a row of ``index.json``)."""

    sequence: str
    system_id: str
    path: str
    split: str
    n_frames: int
    n_atoms: int

    def to_json(self) -> dict[str, Any]:
        return {
            "sequence": self.sequence,
            "system": self.system_id,
            "path": self.path,
            "split": self.split,
            "n_frames": self.n_frames,
            "n_atoms": self.n_atoms,
        }

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> PeptideEntry:
        return cls(
            sequence=str(row["sequence"]),
            system_id=str(row["system"]),
            path=str(row["path"]),
            split=str(row["split"]),
            n_frames=int(row["n_frames"]),
            n_atoms=int(row["n_atoms"]),
        )


@dataclass
class DipeptideIndex:
    """The completed peptides of a dipeptide dataset directory ``root``.

    Example:
        >>> index = load_index("dipeptides")  # doctest: +SKIP
        >>> index.sequences("test")[:3]  # doctest: +SKIP
        ['AC', 'KI', 'NY']
        >>> index.dataset("AC").positions.shape  # doctest: +SKIP
        torch.Size([500, 27, 3])
    """

    root: Path
    peptides: list[PeptideEntry]
    md: dict[str, Any] = field(default_factory=dict)

    def sequences(self, split: str | None = None) -> list[str]:
        """Sequences of the peptides in ``split`` (``"train"``, ``"test"``, or ``None``: all)."""
        if split not in ("train", "test", None):
            raise BoltzflowError(f"split must be 'train', 'test' or None, got {split!r}")
        return [p.sequence for p in self.peptides if split is None or p.split == split]

    def entry(self, sequence: str) -> PeptideEntry:
        """The entry of ``sequence`` (``"AC"`` or ``"dipeptide:AC"``)."""
        seq = sequence.partition(":")[2] if ":" in sequence else sequence
        for p in self.peptides:
            if p.sequence == seq.upper():
                return p
        raise BoltzflowError(
            f"{sequence!r} is not in the dipeptide dataset {self.root} (it holds "
            f"{len(self.peptides)} peptides; see `boltzflow dataset info {self.root}`)"
        )

    def dataset(self, sequence: str) -> Dataset:
        """The MD :class:`~boltzflow.data.Dataset` of ``sequence``."""
        from ..dataset import Dataset

        return Dataset.load(self.root / self.entry(sequence).path)

    def __len__(self) -> int:
        return len(self.peptides)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": INDEX_FORMAT,
            "format_version": INDEX_FORMAT_VERSION,
            "forcefield": FORCEFIELD,
            "solvent": SOLVENT,
            "temperature": TEMPERATURE,
            "md": self.md,
            "peptides": [p.to_json() for p in self.peptides],
        }


def load_index(path: str | Path) -> DipeptideIndex:
    """Read a dipeptide dataset: its directory, or its ``index.json``.

    Raises:
        BoltzflowError: no index there, unreadable JSON, or another format or version.
    """
    path = Path(path)
    index_path = path if path.suffix == ".json" else path / INDEX_NAME
    root = index_path.parent
    if not index_path.is_file():
        hint = (
            "the build has not finished any peptide yet; rerun it to resume"
            if root.is_dir()
            else "build one with `boltzflow dataset dipeptides --out DIR`"
        )
        raise BoltzflowError(f"{index_path} does not exist: not a dipeptide dataset ({hint})")
    try:
        data = json.loads(index_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BoltzflowError(f"cannot read {index_path}: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != INDEX_FORMAT:
        raise BoltzflowError(f"{index_path} is not a dipeptide dataset index ({INDEX_FORMAT})")
    if data.get("format_version") != INDEX_FORMAT_VERSION:
        raise BoltzflowError(
            f"{index_path} has format_version {data.get('format_version')!r}; this boltzflow "
            f"reads version {INDEX_FORMAT_VERSION}: rebuild it with this version"
        )
    try:
        peptides = [PeptideEntry.from_json(row) for row in data["peptides"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise BoltzflowError(f"{index_path} has a malformed peptide entry ({exc!r})") from exc
    return DipeptideIndex(root=root, peptides=peptides, md=dict(data.get("md") or {}))



def write_index(root: Path, md: dict[str, Any], entries: dict[str, PeptideEntry]) -> DipeptideIndex:
    """Write ``root/index.json`` atomically: the ``entries`` (sorted) built with MD settings ``md``."""
    index = DipeptideIndex(root=root, peptides=[entries[s] for s in sorted(entries)], md=md)
    files.write_json_atomic(root / INDEX_NAME, index.to_json())
    return index
