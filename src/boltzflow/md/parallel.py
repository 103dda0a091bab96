"""Replicas in worker processes: :class:`ParallelWalkers` steps the walkers of a parallel-tempering
ladder on several cores at once (OpenMM's Reference platform runs one thread per context).

Each worker process holds a :class:`~.walkers.Walkers` over its share of the ladder, seeded by
the walkers' ladder indices, so a parallel run is step for step the run of one process.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BoltzflowError
from .walkers import Walkers, save_state_arrays

__all__ = ["ParallelWalkers", "serve"]


def serve(conn: Connection, xml: str, temperatures: list[float], indices: list[int],
          options: dict[str, Any]) -> None:
    """A worker: build its walkers, then answer ``(method, args)`` calls until ``None``."""
    import openmm

    try:
        walkers = Walkers(openmm.XmlSerializer.deserialize(xml), temperatures,
                          indices=indices, **options)
        conn.send(("ok", None))
    except Exception as exc:  # report to the parent, which raises it
        conn.send(("error", repr(exc)))
        return
    while (message := _receive(conn)) is not None:
        method, args = message
        try:
            conn.send(("ok", getattr(walkers, method)(*args)))
        except Exception as exc:
            conn.send(("error", repr(exc)))


def _receive(conn: Connection) -> Any:
    """The next call, or ``None`` when the parent has gone."""
    try:
        return conn.recv()
    except (EOFError, OSError):
        return None


class ParallelWalkers:
    """The interface of :class:`~.walkers.Walkers`, with the walkers spread over ``n_workers``
    processes (walker ``r`` in worker ``r mod n_workers``); :meth:`step` runs them at once.

    Args:
        openmm_system: the OpenMM ``System``.
        temperatures: starting temperature of each walker (kelvin).
        n_workers: worker processes (at most one per walker).
        **options: ``friction_per_ps``, ``timestep_fs``, ``platform``, ``seed`` of ``Walkers``.
    """

    def __init__(self, openmm_system: Any, temperatures: Sequence[float], *, n_workers: int,
                 **options: Any):
        import openmm

        self.temperatures = [float(t) for t in temperatures]
        n_workers = max(1, min(n_workers, len(self.temperatures)))
        self.owner = [(r % n_workers, r // n_workers) for r in range(len(self.temperatures))]
        xml = openmm.XmlSerializer.serialize(openmm_system)
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        self.conns: list[Connection] = []
        self.processes = []
        for w in range(n_workers):
            indices = list(range(w, len(self.temperatures), n_workers))
            parent, child = context.Pipe()
            process = context.Process(
                target=serve, daemon=True,
                args=(child, xml, [self.temperatures[r] for r in indices], indices, options),
            )
            process.start()
            self.conns.append(parent)
            self.processes.append(process)
        for conn in self.conns:
            self._answer(conn)

    def __len__(self) -> int:
        return len(self.temperatures)

    @staticmethod
    def _answer(conn: Connection) -> Any:
        try:
            status, value = conn.recv()
        except EOFError:
            raise BoltzflowError("an MD worker process died; rerun to resume") from None
        if status != "ok":
            raise BoltzflowError(f"an MD worker process failed: {value}")
        return value

    def _all(self, method: str, *args: Any) -> list[Any]:
        """Call ``method`` in every worker at once; their answers in worker order."""
        for conn in self.conns:
            conn.send((method, args))
        return [self._answer(conn) for conn in self.conns]

    def _one(self, walker: int, method: str, *args: Any) -> Any:
        worker, local = self.owner[walker]
        self.conns[worker].send((method, (local, *args)))
        return self._answer(self.conns[worker])

    def start(self, positions: np.ndarray, seed: int) -> None:
        """Place every walker at ``positions`` with Maxwell–Boltzmann velocities."""
        self._all("start", np.asarray(positions, np.float64), seed)

    def step(self, n: int) -> None:
        """``n`` steps of every walker, the workers in parallel."""
        self._all("step", n)

    def run_frames(self, chunks: Sequence[int], walker: int) -> list[tuple[np.ndarray, float]]:
        """Step every walker by each of ``chunks`` (the workers in parallel), keeping the frame
        of ``walker`` after each: one message per worker for the whole run."""
        owner, local = self.owner[walker]
        for w, conn in enumerate(self.conns):
            conn.send(("run_frames", (list(chunks), local if w == owner else None)))
        answers = [self._answer(conn) for conn in self.conns]
        return answers[owner]

    def potential_energies(self) -> list[float]:
        """Potential energy of each walker (kJ/mol), in ladder order."""
        per_worker = self._all("potential_energies")
        return [per_worker[w][i] for w, i in self.owner]

    def frame(self, walker: int) -> tuple[np.ndarray, float]:
        """Positions (nm) and potential energy (kJ/mol) of a walker."""
        return self._one(walker, "frame")

    def set_temperature(self, walker: int, temperature: float) -> None:
        """Move a walker to ``temperature``, rescaling its velocities."""
        self._one(walker, "set_temperature", temperature)
        self.temperatures[walker] = temperature

    def set_integrator_temperature(self, walker: int, temperature: float) -> None:
        """Set a walker's temperature, velocities untouched."""
        self._one(walker, "set_integrator_temperature", temperature)
        self.temperatures[walker] = temperature

    def save_state(self, path: Path, meta: dict[str, Any]) -> None:
        """Every walker's checkpoint and ``meta``, in the file format of ``Walkers``."""
        arrays: dict[str, np.ndarray] = {}
        for part in self._all("state_arrays"):
            arrays.update(part)
        save_state_arrays(path, meta, arrays)

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore every walker from :func:`~.walkers.read_state` arrays."""
        self._all("load_state", arrays)

    def close(self) -> None:
        """Stop the worker processes."""
        for conn, process in zip(self.conns, self.processes):
            try:
                conn.send(None)
            except (BrokenPipeError, OSError):
                pass
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
        self.conns, self.processes = [], []
