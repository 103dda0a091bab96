"""Every kind of Boltzmann generator behind one interface (:class:`ModelKind`), by name.

Adding a kind is one new module with a :class:`ModelKind` subclass and one line in
:data:`KINDS` (see ``docs/architecture.md``).

Example:
    >>> from boltzflow.models import get_kind, parse_config
    >>> parse_config({"model": "coupling", "train": {"steps": 10}}).train.steps
    10
    >>> get_kind("internal").transferable
    False
"""

from __future__ import annotations

from .base import ModelKind, TrainingSet
from .registry import KINDS, config_with, get_kind, load_config, override_config, parse_config

__all__ = [
    "KINDS",
    "ModelKind",
    "TrainingSet",
    "config_with",
    "get_kind",
    "load_config",
    "override_config",
    "parse_config",
]
