"""Systems: named targets with their energy, temperature and reference data."""

from __future__ import annotations

from .base import System
from .registry import available, get, register

__all__ = ["System", "available", "get", "register"]
