"""Systems: named targets with their energy, temperature and reference data."""

from __future__ import annotations

from .base import System
from .catalogue import available, get, resolve
from .molecule import MolecularSystem
from .molecules import from_pdb, from_sequence
from .registry import register

__all__ = ["MolecularSystem", "System", "available", "from_pdb", "from_sequence", "get", "register", "resolve"]
