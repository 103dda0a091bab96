"""Datasets of molecular frames: the on-disk format, loading, export, user trajectories,
and the multi-peptide dipeptide dataset (:mod:`boltzflow.data.dipeptides`)."""

from __future__ import annotations

from .dataset import Dataset, info
from .dipeptides import DipeptideIndex, PeptideEntry, build_dipeptide_dataset, load_index

__all__ = [
    "Dataset",
    "DipeptideIndex",
    "PeptideEntry",
    "build_dipeptide_dataset",
    "info",
    "load_index",
]
