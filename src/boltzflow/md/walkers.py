"""OpenMM Langevin walkers (one Context per replica) and their restart states on disk."""

from __future__ import annotations

import json
import math
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..data import files
from ..errors import BoltzflowError

if TYPE_CHECKING:
    import openmm


def platform_by_name(name: str):
    """The OpenMM ``Platform`` called ``name``; a clear error lists the available ones."""
    import openmm

    try:
        return openmm.Platform.getPlatformByName(name)
    except openmm.OpenMMException:
        known = [
            openmm.Platform.getPlatform(i).getName()
            for i in range(openmm.Platform.getNumPlatforms())
        ]
        raise BoltzflowError(
            f"unknown OpenMM platform {name!r}; available here: {', '.join(known)}"
        ) from None


def integrator_seed(seed: int, walker: int) -> int:
    """A non-zero 31-bit seed for walker ``walker`` (OpenMM reads 0 as 'pick one at random')."""
    state = np.random.SeedSequence([seed, walker, 0x6D64]).generate_state(1)[0]
    return int(state % (2**31 - 2)) + 1


def repartition_hydrogen_mass(openmm_system: openmm.System, mass_amu: float) -> openmm.System:
    """A copy of ``openmm_system`` in which every hydrogen weighs ``mass_amu``, the difference
    taken from the heavy atom it is bonded to (bonds read off its ``HarmonicBondForce``), as
    OpenMM's ``ForceField.createSystem(hydrogenMass=...)`` does. Forces are untouched.

    Raises:
        BoltzflowError: ``mass_amu`` not in (1, 5] amu, or a heavy atom left under 1 amu
            (naming it). A methyl carbon with 4-amu hydrogens keeps 3.03 amu, as in OpenMM.
    """
    import openmm
    from openmm import unit

    check_hydrogen_mass(mass_amu)
    copy = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(openmm_system))
    masses = [copy.getParticleMass(i).value_in_unit(unit.dalton) for i in range(copy.getNumParticles())]
    new = list(masses)
    for force in copy.getForces():
        if not isinstance(force, openmm.HarmonicBondForce):
            continue
        for k in range(force.getNumBonds()):
            a, b, *_ = force.getBondParameters(k)
            if masses[a] >= _HYDROGEN_BELOW:
                a, b = b, a
            if masses[a] < _HYDROGEN_BELOW <= masses[b] and masses[a] > 0:
                new[b] -= mass_amu - new[a]
                new[a] = float(mass_amu)
    for i, (old, m) in enumerate(zip(masses, new)):
        if old >= _HYDROGEN_BELOW and m < 1.0:
            raise BoltzflowError(
                f"hydrogen_mass_amu={mass_amu} leaves atom {i} with {m:.2f} amu (it carries "
                "too many hydrogens); choose a smaller hydrogen mass"
            )
        copy.setParticleMass(i, m)
    return copy


def check_hydrogen_mass(mass_amu: float | None) -> None:
    """``None`` or a number in (1, 5] amu, else a :class:`BoltzflowError` naming the setting."""
    if mass_amu is None:
        return
    if isinstance(mass_amu, bool) or not (
            isinstance(mass_amu, (int, float)) and math.isfinite(mass_amu) and 1.0 < mass_amu <= 5.0):
        raise BoltzflowError(
            f"hydrogen_mass_amu must be a number in (1, 5] amu (3-4 is usual), got {mass_amu!r}"
        )


#: Particles lighter than this (amu) are hydrogens for :func:`repartition_hydrogen_mass`.
_HYDROGEN_BELOW = 1.5


class Walkers:
    """Replicas of one OpenMM system, each with its own ``LangevinMiddleIntegrator``.

    Args:
        openmm_system: the OpenMM ``System`` (no constraints are added).
        temperatures: starting temperature of each walker (kelvin).
        friction_per_ps: Langevin friction (1/ps).
        timestep_fs: time step (fs).
        platform: OpenMM platform name.
        seed: seeds the integrators' random streams (one per walker).
        indices: the walkers' indices in the whole ladder (default ``0, 1, …``): they pick the
            random streams and name the saved states, so a subset of the walkers (one worker
            process's share, :mod:`.parallel`) runs exactly as it would among all of them.
    """

    def __init__(
        self,
        openmm_system: openmm.System,
        temperatures: Sequence[float],
        *,
        friction_per_ps: float,
        timestep_fs: float,
        platform: str,
        seed: int,
        indices: Sequence[int] | None = None,
    ):
        import openmm

        self.platform = platform_by_name(platform)
        self.temperatures = [float(t) for t in temperatures]
        self.indices = list(range(len(self.temperatures)) if indices is None else indices)
        self.integrators, self.contexts = [], []
        for r, t in zip(self.indices, self.temperatures):
            integrator = openmm.LangevinMiddleIntegrator(t, friction_per_ps, timestep_fs / 1000.0)
            integrator.setRandomNumberSeed(integrator_seed(seed, r))
            self.integrators.append(integrator)
            self.contexts.append(openmm.Context(openmm_system, integrator, self.platform))

    def __len__(self) -> int:
        return len(self.contexts)

    def start(self, positions: np.ndarray, seed: int) -> None:
        """Place every walker at ``positions`` ``[n_atoms, 3]`` nm with Maxwell–Boltzmann velocities."""
        for r, context, t in zip(self.indices, self.contexts, self.temperatures):
            context.setPositions(np.asarray(positions, np.float64))
            context.setVelocitiesToTemperature(t, integrator_seed(seed, 1000 + r))

    def step(self, n: int) -> None:
        for integrator in self.integrators:
            integrator.step(n)

    def run_frames(self, chunks: Sequence[int], walker: int | None) -> list[tuple[np.ndarray, float]]:
        """Step every walker by each of ``chunks`` in turn, keeping :meth:`frame` of ``walker``
        after each (no frames if ``None``)."""
        frames = []
        for n in chunks:
            self.step(n)
            if walker is not None:
                frames.append(self.frame(walker))
        return frames

    def potential_energies(self) -> list[float]:
        """Potential energy of each walker (kJ/mol)."""
        from openmm import unit

        return [
            c.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
            for c in self.contexts
        ]

    def frame(self, walker: int) -> tuple[np.ndarray, float]:
        """Positions ``[n_atoms, 3]`` (nm, float64) and potential energy (kJ/mol) of a walker."""
        from openmm import unit

        state = self.contexts[walker].getState(getPositions=True, getEnergy=True)
        positions = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        return positions, state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)

    def set_temperature(self, walker: int, temperature: float) -> None:
        """Move a walker to ``temperature``, rescaling its velocities by ``sqrt(T_new / T_old)``."""
        context = self.contexts[walker]
        scale = (temperature / self.temperatures[walker]) ** 0.5
        velocities = context.getState(getVelocities=True).getVelocities(asNumpy=True)
        context.setVelocities(velocities * scale)
        self.integrators[walker].setTemperature(temperature)
        self.temperatures[walker] = temperature

    def set_integrator_temperature(self, walker: int, temperature: float) -> None:
        """Set a walker's temperature without touching its velocities (a restored state's
        velocities already belong to it)."""
        self.integrators[walker].setTemperature(temperature)
        self.temperatures[walker] = temperature

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Every walker's checkpoint and portable XML state, keyed by its ladder index."""
        import openmm

        arrays = {}
        for r, context in zip(self.indices, self.contexts):
            arrays[f"checkpoint_{r}"] = np.frombuffer(context.createCheckpoint(), np.uint8)
            xml = openmm.XmlSerializer.serialize(
                context.getState(getPositions=True, getVelocities=True, getParameters=True)
            )
            arrays[f"xml_{r}"] = np.frombuffer(xml.encode(), np.uint8)
        return arrays

    def save_state(self, path: Path, meta: dict[str, Any]) -> None:
        """Write every walker's checkpoint (+ portable XML state) and ``meta`` atomically."""
        save_state_arrays(path, meta, self.state_arrays())

    def close(self) -> None:
        """Nothing to release in this process (see :class:`.parallel.ParallelWalkers`)."""

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore walkers from :func:`read_state` arrays; exact (incl. random streams) on the
        platform that wrote them, positions and velocities only on another one."""
        import openmm

        for r, context in zip(self.indices, self.contexts):
            try:
                context.loadCheckpoint(arrays[f"checkpoint_{r}"].tobytes())
            except openmm.OpenMMException:
                warnings.warn(
                    f"MD checkpoint is from another platform or OpenMM version; continuing "
                    f"from positions and velocities on {self.platform.getName()} "
                    "(statistically equivalent, not bit-identical)",
                    stacklevel=3,
                )
                state = openmm.XmlSerializer.deserialize(arrays[f"xml_{r}"].tobytes().decode())
                context.setState(state)


def save_state_arrays(path: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Write walkers' :meth:`Walkers.state_arrays` and ``meta`` to ``path`` atomically."""
    arrays = {"meta": np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays}
    files.write_atomic(path, lambda f: np.savez(f, **arrays))


def read_state(path: Path, n_walkers: int) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    """``(meta, arrays)`` of a state file, or ``None`` if it is missing or unreadable."""
    try:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(arrays.pop("meta").tobytes().decode())
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    if any(f"checkpoint_{r}" not in arrays for r in range(n_walkers)):
        return None
    return meta, arrays
