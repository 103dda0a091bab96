"""The table of named targets and the ``register`` decorator; it imports no system module.

The built-in systems register themselves when :mod:`boltzflow.systems.catalogue` imports them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType

from .base import System

#: ``factory()`` builds a fresh system; a parametric family (id ``"name:XY"``) takes the id.
Factory = Callable[..., System]


@dataclass(frozen=True)
class Entry:
    """A registered system: its factory and a one-line description."""

    factory: Factory
    description: str


_ENTRIES: dict[str, Entry] = {}


def register(system_id: str, description: str) -> Callable[[Factory], Factory]:
    """Decorator registering a factory under ``system_id``.

    Example:
        >>> @register("my-well", "1-D double well")  # doctest: +SKIP
        ... def my_well() -> System: ...
    """

    def deco(factory: Factory) -> Factory:
        if system_id in _ENTRIES:
            raise ValueError(f"system id {system_id!r} is already registered")
        _ENTRIES[system_id] = Entry(factory, description)
        return factory

    return deco


def entries() -> MappingProxyType[str, Entry]:
    """A read-only view of every registered system, in registration order."""
    return MappingProxyType(_ENTRIES)

