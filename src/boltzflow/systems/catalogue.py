"""Look-up of the built-in and user-registered systems: ``get``, ``resolve``, ``available``."""

from __future__ import annotations

from ..errors import BoltzflowError
from . import toys  # noqa: F401  (imported first: registers the toys, which lead the listings)
from .base import System
from .molecules import from_pdb  # importing it registers the molecules
from .registry import entries


def available() -> dict[str, str]:
    """``{id: description}`` of every registered system, in registration order."""
    return {key: entry.description for key, entry in entries().items()}


def get(system_id: str) -> System:
    """The system registered under ``system_id`` (``"dipeptide:AK"`` for a family member).

    Raises:
        BoltzflowError: unknown id; the message lists the known ones.
    """
    table = entries()
    if system_id in table:
        return table[system_id].factory()
    family = [k for k in table if k.startswith(system_id.partition(":")[0] + ":")]
    if family:  # parametric id: dipeptide:AK → dipeptide:XY
        return table[family[0]].factory(system_id)
    raise BoltzflowError(f"unknown system {system_id!r}; known systems: {', '.join(table)}")


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
