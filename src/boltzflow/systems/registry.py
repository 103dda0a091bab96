"""Registry of named targets: ``get(id)`` builds a fresh :class:`System`."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import BoltzflowError
from .base import System

_FACTORIES: dict[str, Callable[[], System]] = {}
_DESCRIPTIONS: dict[str, str] = {}


def register(system_id: str, description: str) -> Callable[[Callable[[], System]], Callable]:
    """Decorator registering a zero-argument factory under ``system_id``."""

    def deco(factory: Callable[[], System]) -> Callable[[], System]:
        if system_id in _FACTORIES:
            raise ValueError(f"system id {system_id!r} is already registered")
        _FACTORIES[system_id] = factory
        _DESCRIPTIONS[system_id] = description
        return factory

    return deco


def _load_builtin() -> None:
    from . import toys  # noqa: F401, I001  (register on import; toys first in listings)
    from . import molecules  # noqa: F401


def available() -> dict[str, str]:
    """``{id: description}`` of every registered system, in registration order."""
    _load_builtin()
    return dict(_DESCRIPTIONS)


def get(system_id: str) -> System:
    """The system registered under ``system_id``.

    Raises:
        BoltzflowError: unknown id; the message lists the known ones.
    """
    _load_builtin()
    family = [k for k in _FACTORIES if k.startswith(system_id.partition(":")[0] + ":")]
    if system_id not in _FACTORIES and family:  # parametric id: dipeptide:AK → dipeptide:XY
        return _FACTORIES[family[0]](system_id)
    if system_id not in _FACTORIES:
        known = ", ".join(_FACTORIES)
        raise BoltzflowError(f"unknown system {system_id!r}; known systems: {known}")
    return _FACTORIES[system_id]()


def resolve(
    spec: str,
    *,
    forcefield: str | None = None,
    solvent: str | None = None,
    temperature: float | None = None,
) -> System:
    """A system from a registry id or a PDB file path (with force field, solvent, temperature).

    ``forcefield``, ``solvent`` and ``temperature`` apply to PDB files only: a named system pins
    everything that changes its energy.
    """
    if spec.lower().endswith(".pdb"):
        from .molecules import from_pdb

        return from_pdb(
            spec,
            forcefield=forcefield or "amber14",
            solvent=solvent or "obc2",
            temperature=300.0 if temperature is None else temperature,
        )
    given = [n for n, v in (("forcefield", forcefield), ("solvent", solvent),
                            ("temperature", temperature)) if v is not None]
    if given:
        raise BoltzflowError(
            f"{', '.join(given)} can only be set for a PDB file; system {spec!r} pins its own "
            "(see `boltzflow systems`)"
        )
    return get(spec)
