"""Datasets of molecular frames: the on-disk format, loading, export, user trajectories."""

from __future__ import annotations

from .dataset import Dataset, info

__all__ = ["Dataset", "info"]
