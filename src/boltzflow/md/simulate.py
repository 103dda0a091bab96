"""``simulate``: Langevin MD (optionally parallel tempering) of a molecule into a resumable dataset."""

from __future__ import annotations

import hashlib
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..conventions import kT
from ..data import files
from ..data.dataset import Dataset, system_provenance, utc_now, write_topology_pdb
from ..errors import BoltzflowError
from ..systems.molecule import MolecularSystem
from .parallel import ParallelWalkers
from .replica_exchange import check_ladder, log_acceptance, neighbour_pairs
from .walkers import Walkers, platform_by_name, read_state, repartition_hydrogen_mass

#: Provenance keys that must agree for a rerun to continue an existing dataset.
SETTINGS_KEYS = (
    "system",
    "forcefield",
    "solvent",
    "temperature",
    "n_atoms",
    "openmm_system_sha256",
    "timestep_fs",
    "friction_per_ps",
    "frame_interval_ps",
    "equilibration_ps",
    "seed",
    "replica_temperatures",
    "exchange_interval_ps",
    "hydrogen_mass_amu",
)
START_STATE = f"{files.STATE_DIR}/start.npz"


def _state_name(chunk: int) -> str:
    return f"{files.STATE_DIR}/after-chunk-{chunk:05d}.npz"


def simulate(
    system: MolecularSystem,
    out: str | Path,
    *,
    ns: float,
    timestep_fs: float = 1.0,
    friction_per_ps: float = 1.0,
    frame_interval_ps: float = 1.0,
    seed: int = 0,
    platform: str = "Reference",
    replicas: Sequence[float] | None = None,
    exchange_interval_ps: float = 1.0,
    equilibration_ps: float = 100.0,
    frames_per_chunk: int = 1000,
    progress: bool = True,
    callback: Callable[[int, int], None] | None = None,
    workers: int | None = None,
    hydrogen_mass_amu: float | None = None,
) -> Dataset:
    """Run Langevin MD of ``system`` and write its frames to the dataset directory ``out``.

    Unconstrained ``LangevinMiddleIntegrator`` dynamics sample the force field's Boltzmann
    distribution at ``system.temperature``. After ``equilibration_ps`` (not saved) a frame is
    kept every ``frame_interval_ps``; frames go to checksummed chunks of ``frames_per_chunk``,
    each followed by an MD restart state, so rerunning the same call after an interruption (or
    with a larger ``ns``) continues from the last complete chunk, and a missing or corrupt
    chunk is redone. With ``replicas`` (a temperature ladder starting at the system
    temperature) one walker runs per temperature, neighbours swap by Metropolis every
    ``exchange_interval_ps``, and only frames at the system temperature are saved.

    Args:
        system: a :class:`~boltzflow.systems.molecule.MolecularSystem`.
        out: dataset directory (created; reused if it holds this very simulation).
        ns: production length in nanoseconds (after equilibration).
        timestep_fs: integration time step (fs).
        friction_per_ps: Langevin friction coefficient (1/ps).
        frame_interval_ps: time between saved frames (ps); a multiple of the time step.
        seed: seeds initial velocities, the integrators and the exchange test.
        platform: OpenMM platform (``Reference`` is fastest for tens of atoms).
        replicas: temperatures (kelvin) for parallel tempering, lowest = system temperature.
        exchange_interval_ps: time between exchange attempts (ps).
        equilibration_ps: unsaved MD from the system's minimized positions (ps).
        frames_per_chunk: frames per chunk file (the unit of resumption).
        progress: show a progress bar with the speed in ns/day (and print acceptance rates).
        callback: ``(n_frames_done, n_frames_total)`` after each chunk is safely on disk.
        workers: processes the replicas run in (``None``: one per core, at most one per
            replica; 1: all in this process). OpenMM's Reference platform draws the random
            numbers of all contexts in a process from one stream, so the frames depend on the
            count (statistically equivalent); the same count repeats them exactly.
        hydrogen_mass_amu: hydrogen mass repartitioning: every hydrogen gets this mass (amu),
            taken from the heavy atom it is bonded to (total mass unchanged), which slows the
            fastest vibrations so that a longer ``timestep_fs`` stays stable. The configurational
            Boltzmann distribution does not depend on the masses, so the frames sample the same
            target; only the dynamics (and the integrator's small discretization error) change.
            ``None`` (default): the force field's masses.

    Returns:
        The :class:`~boltzflow.data.Dataset` in ``out``.

    Raises:
        BoltzflowError: bad settings, unknown platform, or ``out`` holding another dataset.
    """
    fields = system_provenance(system)
    plan = SimulationPlan.make(
        fields["temperature"],
        ns=ns,
        timestep_fs=timestep_fs,
        friction_per_ps=friction_per_ps,
        frame_interval_ps=frame_interval_ps,
        replicas=replicas,
        exchange_interval_ps=exchange_interval_ps,
        equilibration_ps=equilibration_ps,
        frames_per_chunk=frames_per_chunk,
    )
    platform_by_name(platform)
    md_system = system.openmm_system
    if hydrogen_mass_amu is not None:
        md_system = repartition_hydrogen_mass(md_system, hydrogen_mass_amu)
    if (n_constraints := system.openmm_system.getNumConstraints()) > 0:
        raise BoltzflowError(
            f"system {system.id!r} has {n_constraints} constraints; boltzflow samples the "
            "unconstrained force field: build the OpenMM system with constraints=None"
        )
    if system.positions is None:
        raise BoltzflowError(f"system {system.id!r} has no starting positions")
    settings = {
        **fields,
        "timestep_fs": float(timestep_fs),
        "friction_per_ps": float(friction_per_ps),
        "frame_interval_ps": float(frame_interval_ps),
        "equilibration_ps": float(equilibration_ps),
        "seed": int(seed),
        "replica_temperatures": plan.temperatures if replicas is not None else None,
        "exchange_interval_ps": float(exchange_interval_ps) if replicas is not None else None,
        "hydrogen_mass_amu": None if hydrogen_mass_amu is None else float(hydrogen_mass_amu),
    }
    start = np.ascontiguousarray(np.asarray(system.positions, np.float64))
    start_sha = hashlib.sha256(start.tobytes()).hexdigest()
    root = Path(out)
    previous = _previous_provenance(root, settings)
    run = _Run(root, plan, settings, previous, platform, progress, start_sha, md_system)
    run.workers = replica_workers(len(plan.temperatures), workers)
    run.execute(system, callback)
    return Dataset.load(root)


@dataclass(frozen=True)
class SimulationPlan:
    """The validated step counts of a simulation, from the settings :func:`simulate` takes.

    Build one with :meth:`make`, which checks every setting with the messages ``simulate``
    gives; the dipeptide builder uses it to validate a whole build before any MD starts.

    Attributes:
        temperatures: the replica temperatures (K), the target first; one without exchange.
        n_frames: saved frames of production MD.
        steps_per_frame: integration steps between saved frames.
        steps_per_exchange: steps between replica-exchange attempts; 0 without exchange.
        equilibration_steps: unsaved steps before the first frame.
        frames_per_chunk: frames per chunk file.
        timestep_fs: integration time step (fs).
        friction_per_ps: Langevin friction (1/ps).
    """

    temperatures: list[float]
    n_frames: int
    steps_per_frame: int
    steps_per_exchange: int
    equilibration_steps: int
    frames_per_chunk: int
    timestep_fs: float
    friction_per_ps: float

    @classmethod
    def make(
        cls,
        temperature: float,
        *,
        ns: float,
        timestep_fs: float,
        friction_per_ps: float,
        frame_interval_ps: float,
        replicas: Sequence[float] | None,
        exchange_interval_ps: float,
        equilibration_ps: float,
        frames_per_chunk: int,
    ) -> SimulationPlan:
        """Check the settings (units as in :func:`simulate`) and count the steps.

        Raises:
            BoltzflowError: a setting out of range, naming it.
        """
        for name, value in [
            ("ns", ns),
            ("timestep_fs", timestep_fs),
            ("friction_per_ps", friction_per_ps),
            ("frame_interval_ps", frame_interval_ps),
            ("exchange_interval_ps", exchange_interval_ps),
        ]:
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise BoltzflowError(f"{name} must be a positive number, got {value!r}")
        if not (math.isfinite(equilibration_ps) and equilibration_ps >= 0):
            raise BoltzflowError(f"equilibration_ps must be >= 0, got {equilibration_ps!r}")
        if int(frames_per_chunk) < 1:
            raise BoltzflowError(f"frames_per_chunk must be >= 1, got {frames_per_chunk!r}")
        n_frames = round(ns * 1000.0 / frame_interval_ps)
        if n_frames < 1:
            raise BoltzflowError(
                f"ns={ns} is shorter than one frame interval ({frame_interval_ps} ps); "
                "simulate longer or save frames more often"
            )
        temps = [float(temperature)] if replicas is None else check_ladder(replicas, temperature)
        return cls(
            temperatures=temps,
            n_frames=n_frames,
            steps_per_frame=_steps(frame_interval_ps, timestep_fs, "frame_interval_ps"),
            steps_per_exchange=(
                0
                if replicas is None
                else _steps(exchange_interval_ps, timestep_fs, "exchange_interval_ps")
            ),
            equilibration_steps=round(equilibration_ps * 1000.0 / timestep_fs),
            frames_per_chunk=int(frames_per_chunk),
            timestep_fs=float(timestep_fs),
            friction_per_ps=float(friction_per_ps),
        )


def _steps(interval_ps: float, timestep_fs: float, name: str) -> int:
    steps = interval_ps * 1000.0 / timestep_fs
    if abs(steps - round(steps)) > 1e-6 * max(1.0, steps):
        raise BoltzflowError(
            f"{name}={interval_ps} ps is not a whole number of {timestep_fs} fs time steps"
        )
    return round(steps)


def _previous_provenance(root: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The provenance of the dataset already in ``root`` if it is this simulation, else error."""
    if root.exists() and not root.is_dir():
        raise BoltzflowError(f"output {root} is a file; give a directory for the dataset")
    if not (root / files.PROVENANCE_NAME).exists():
        return None
    previous = files.read_provenance(root)
    differing = [k for k in SETTINGS_KEYS if previous.get(k) != settings[k]]
    if previous.get("source") != "md":
        differing.insert(0, "source")
    if differing:
        detail = ", ".join(
            f"{k}: {previous.get(k)!r} there vs {settings.get(k)!r} now" for k in differing[:4]
        )
        raise BoltzflowError(
            f"{root} already holds a dataset with different settings ({detail}); "
            "use another --out, or delete it to start over"
        )
    return previous


@dataclass
class _Exchange:
    """Replica-exchange bookkeeping: which walker sits at each temperature, and the counts."""

    slot_walker: list[int]  # slot (temperature index) -> walker
    attempts: list[int]
    accepted: list[int]
    n_rounds: int = 0
    rng: np.random.Generator = field(default_factory=np.random.default_rng)

    @classmethod
    def fresh(cls, n: int, seed: int) -> _Exchange:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x7074]))
        return cls(list(range(n)), [0] * (n - 1), [0] * (n - 1), 0, rng)

    def to_meta(self) -> dict[str, Any]:
        return {
            "slot_walker": self.slot_walker,
            "attempts": self.attempts,
            "accepted": self.accepted,
            "n_rounds": self.n_rounds,
            "rng": self.rng.bit_generator.state,
        }

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> _Exchange:
        rng = np.random.default_rng()
        rng.bit_generator.state = meta["rng"]
        return cls(meta["slot_walker"], meta["attempts"], meta["accepted"], meta["n_rounds"], rng)

    def reset_counts(self) -> None:
        self.attempts = [0] * len(self.attempts)
        self.accepted = [0] * len(self.accepted)
        self.n_rounds = 0

    def attempt(self, walkers: Walkers, temperatures: list[float]) -> None:
        """One round of Metropolis swaps between neighbouring temperatures."""
        energies = walkers.potential_energies()
        for i in neighbour_pairs(len(temperatures), self.n_rounds):
            a, b = self.slot_walker[i], self.slot_walker[i + 1]
            log_acc = log_acceptance(temperatures[i], temperatures[i + 1], energies[a], energies[b])
            self.attempts[i] += 1
            if math.log(max(self.rng.random(), 1e-300)) < log_acc:
                self.accepted[i] += 1
                self.slot_walker[i], self.slot_walker[i + 1] = b, a
                walkers.set_temperature(a, temperatures[i + 1])
                walkers.set_temperature(b, temperatures[i])
        self.n_rounds += 1

    def summary(self, temperatures: list[float], interval_ps: float) -> dict[str, Any]:
        pairs = [
            {
                "temperatures": [temperatures[i], temperatures[i + 1]],
                "attempts": n,
                "accepted": k,
                "acceptance_rate": (k / n) if n else None,
            }
            for i, (n, k) in enumerate(zip(self.attempts, self.accepted))
        ]
        return {
            "temperatures": temperatures,
            "exchange_interval_ps": interval_ps,
            "n_rounds": self.n_rounds,
            "pairs": pairs,
            "frames_from": "the walker at the lowest temperature; chunk key 'replica' names it",
        }


class _Run:
    """One session of :func:`simulate`: restore or start, then add chunks until done."""

    def __init__(
        self,
        root: Path,
        plan: SimulationPlan,
        settings: dict[str, Any],
        previous: dict[str, Any] | None,
        platform: str,
        progress: bool,
        start_sha: str,
        md_system: Any,
    ):
        self.root, self.plan, self.settings, self.platform = root, plan, settings, platform
        self.md_system = md_system  # the OpenMM System the walkers integrate (masses may differ)
        self.progress = progress
        self.previous = previous or {}
        # the positions the first session started from (not a setting: a resumed run
        # continues from its saved state, whatever positions the system now carries)
        self.start_sha = self.previous.get("initial_positions_sha256") or start_sha
        self.records: list[dict[str, Any]] = list(self.previous.get("chunks", []))
        self.pt = len(plan.temperatures) > 1
        self.workers = 1

    # -- bookkeeping -------------------------------------------------------------------------

    def _trusted_prefix(self) -> tuple[list[dict[str, Any]], Any]:
        """Chunks to keep (in order, up to the first bad one) and the state to continue from."""
        kept: list[dict[str, Any]] = []
        for i, record in enumerate(self.records):
            problem = files.chunk_problem(self.root, record)
            if record["file"] != files.chunk_name(i) or problem is not None:
                warnings.warn(
                    f"{self.root}: {problem or 'chunk out of order'}; redoing it and "
                    "the chunks after it",
                    stacklevel=4,
                )
                break
            kept.append(record)
        n_walkers = len(self.plan.temperatures)
        while kept:
            state = read_state(self.root / _state_name(len(kept) - 1), n_walkers)
            if state is not None:
                return kept, state
            warnings.warn(
                f"{self.root}: restart state after chunk {len(kept) - 1} is missing "
                "or unreadable; redoing that chunk",
                stacklevel=4,
            )
            kept.pop()
        return kept, read_state(self.root / START_STATE, n_walkers)

    def _write_provenance(self, exchange: _Exchange | None, wall_seconds: float) -> None:
        import openmm

        from ..version import __version__

        n_frames = sum(r["n_frames"] for r in self.records)
        used = list(dict.fromkeys([*self.previous.get("platforms_used", []), self.platform]))
        production_ns = n_frames * self.settings["frame_interval_ps"] / 1000.0
        prov = {
            "format": files.FORMAT,
            "format_version": files.FORMAT_VERSION,
            "source": "md",
            **self.settings,
            "integrator": "LangevinMiddleIntegrator",
            "constraints": "none",
            "initial_positions_sha256": self.start_sha,
            "position_units": "nm",
            "energy_units": "kT at temperature (reduced potential energy U / kT)",
            "n_frames": n_frames,
            "n_frames_requested": max(self.plan.n_frames, n_frames),
            "production_ns": production_ns,
            "replica_exchange": (
                exchange.summary(self.plan.temperatures, self.settings["exchange_interval_ps"])
                if exchange is not None
                else None
            ),
            "platform": self.platform,
            "platforms_used": used,
            "workers": self.workers,
            "openmm_version": openmm.__version__,
            "boltzflow_version": __version__,
            "created": self.previous.get("created") or utc_now(),
            "updated": utc_now(),
            "wall_seconds": wall_seconds,
            "ns_per_day": production_ns / wall_seconds * 86400.0 if wall_seconds > 0 else None,
            "chunks": self.records,
        }
        files.write_json_atomic(self.root / files.PROVENANCE_NAME, prov)
        self.previous = prov

    # -- the simulation ----------------------------------------------------------------------

    def execute(self, system: MolecularSystem, callback: Callable[[int, int], None] | None) -> None:
        plan = self.plan
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BoltzflowError(
                f"cannot create output directory {self.root}: {exc.strerror}"
            ) from exc
        n_recorded = len(self.records)
        self.records, state = self._trusted_prefix()
        done = sum(r["n_frames"] for r in self.records)
        exchange = (
            _Exchange.fresh(len(plan.temperatures), self.settings["seed"]) if self.pt else None
        )
        step, wall = 0, 0.0
        if state is not None:
            meta, arrays = state
            step, wall = meta["step"], meta["wall_seconds"]
            if self.pt:
                exchange = _Exchange.from_meta(meta["exchange"])
        if done >= plan.n_frames:
            if len(self.records) != n_recorded:
                self._write_provenance(exchange, wall)
            return
        walkers = self._walkers()
        try:
            self._session(system, walkers, exchange, state, step, wall, done, callback)
        finally:
            walkers.close()

    def _walkers(self) -> Walkers | ParallelWalkers:
        """The ladder's walkers, in this process or spread over worker processes."""
        options = {"friction_per_ps": self.plan.friction_per_ps,
                   "timestep_fs": self.plan.timestep_fs, "platform": self.platform,
                   "seed": self.settings["seed"]}
        if self.workers > 1:
            return ParallelWalkers(self.md_system, self.plan.temperatures,
                                   n_workers=self.workers, **options)
        return Walkers(self.md_system, self.plan.temperatures, **options)

    def _session(
        self, system: MolecularSystem, walkers: Walkers | ParallelWalkers,
        exchange: _Exchange | None, state: Any, step: int, wall: float, done: int,
        callback: Callable[[int, int], None] | None,
    ) -> None:
        """Equilibrate (or restore), then add chunks until the plan's frames are on disk."""
        plan = self.plan
        if system.topology is not None and not (self.root / files.TOPOLOGY_NAME).exists():
            write_topology_pdb(self.root, system.topology, np.asarray(system.positions))
        if state is None:
            self._write_provenance(exchange, 0.0)
            step = self._equilibrate(walkers, exchange, np.asarray(system.positions))
        else:
            walkers.load_state(state[1])
            if exchange is not None:
                # slot_walker maps temperature index -> walker; its inverse gives each walker's
                # temperature (velocities in the checkpoint already belong to it)
                for walker, slot in enumerate(np.argsort(exchange.slot_walker)):
                    walkers.set_integrator_temperature(walker, plan.temperatures[slot])
        self._write_provenance(exchange, wall)

        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(
                total=plan.n_frames,
                initial=done,
                unit="frame",
                dynamic_ncols=True,
                desc=f"MD {self.settings['system']}",
            )
        t_session, steps_session = time.perf_counter(), 0
        try:
            while done < plan.n_frames:
                index = len(self.records)
                n = min(plan.frames_per_chunk, plan.n_frames - done)
                t0 = time.perf_counter()
                arrays, step = self._production(
                    walkers, exchange, step, n, bar, t_session, steps_session
                )
                steps_session += n * plan.steps_per_frame
                wall += time.perf_counter() - t0
                self.records.append(files.write_chunk(self.root, index, arrays))
                meta = {
                    "step": step,
                    "wall_seconds": wall,
                    "chunk": index,
                    "exchange": exchange.to_meta() if exchange else None,
                }
                walkers.save_state(self.root / _state_name(index), meta)
                self._write_provenance(exchange, wall)
                done += n
                if callback is not None:
                    callback(done, plan.n_frames)
        finally:
            if bar is not None:
                bar.close()
        if self.progress and exchange is not None:
            _print_acceptance(exchange.summary(plan.temperatures, 0.0)["pairs"])

    def _advance(self, walkers: Walkers, exchange: _Exchange | None, step: int, target: int) -> int:
        """Run every walker from ``step`` to ``target``, exchanging on the exchange grid."""
        spe = self.plan.steps_per_exchange
        while step < target:
            nxt = target if exchange is None else min(target, (step // spe + 1) * spe)
            walkers.step(nxt - step)
            step = nxt
            if exchange is not None and step % spe == 0:
                exchange.attempt(walkers, self.plan.temperatures)
        return step

    def _equilibrate(
        self, walkers: Walkers, exchange: _Exchange | None, positions: np.ndarray
    ) -> int:
        """Unsaved MD from the minimized positions; production step 0 starts after it."""
        walkers.start(positions, self.settings["seed"])
        step = self._advance(walkers, exchange, -self.plan.equilibration_steps, 0)
        _check_finite(walkers.potential_energies(), "the end of equilibration")
        if exchange is not None:
            exchange.reset_counts()
        meta = {
            "step": step,
            "wall_seconds": 0.0,
            "chunk": -1,
            "exchange": exchange.to_meta() if exchange else None,
        }
        walkers.save_state(self.root / START_STATE, meta)
        return step

    def _frames_before_exchange(self, step: int, left: int) -> int:
        """How many of the next ``left`` frames (at most 100, for the progress bar) come
        before the next exchange attempt."""
        spf, spe = self.plan.steps_per_frame, self.plan.steps_per_exchange
        if spe == 0:
            return min(left, 100)
        next_exchange = (step // spe + 1) * spe
        return max(0, min(left, 100, -(-(next_exchange - step) // spf) - 1))

    def _production(
        self,
        walkers: Walkers,
        exchange: _Exchange | None,
        step: int,
        n: int,
        bar: Any,
        t_session: float,
        steps_session: int,
    ) -> tuple[dict[str, np.ndarray], int]:
        """``n`` frames at the system temperature, as chunk arrays, and the final step."""
        plan = self.plan
        n_atoms = self.settings["n_atoms"]
        out = {
            "positions": np.empty((n, n_atoms, 3), np.float32),
            "energies": np.empty(n, np.float64),
            "steps": np.empty(n, np.int64),
            "replica": np.empty(n, np.int16),
        }
        kt0 = kT(plan.temperatures[0])
        spf, k = plan.steps_per_frame, 0
        while k < n:
            walker = exchange.slot_walker[0] if exchange is not None else 0
            m = self._frames_before_exchange(step, n - k)
            if m:  # no exchange in between: the walkers run m frames in one call
                frames = walkers.run_frames([spf] * m, walker)
            else:  # the next frame is at or past an exchange
                step = self._advance(walkers, exchange, step, step + spf) - spf
                walker = exchange.slot_walker[0] if exchange is not None else 0
                frames, m = [walkers.frame(walker)], 1
            for j, (x, energy) in enumerate(frames):
                _check_finite([energy], f"step {step + (j + 1) * spf}")
                out["positions"][k + j] = x
                out["energies"][k + j] = energy / kt0
                out["steps"][k + j] = step + (j + 1) * spf
                out["replica"][k + j] = walker
            step, k = step + m * spf, k + m
            if bar is not None:
                bar.update(m)
                elapsed = time.perf_counter() - t_session
                sim_ns = (steps_session + k * spf) * plan.timestep_fs * 1e-6
                if elapsed > 0:
                    bar.set_postfix_str(f"{sim_ns / elapsed * 86400:.0f} ns/day", refresh=False)
        return out, step


def replica_workers(n_replicas: int, workers: int | None) -> int:
    """Worker processes for ``n_replicas`` walkers: ``workers``, else one per core of this
    process's affinity mask (at most one per replica).

    Not the free cores: the count must not depend on the load of the moment, since it changes
    the random streams (see :func:`simulate`), and MD processes on a busy core just take turns
    (no OpenMP threads to spin).
    """
    if workers is not None:
        if workers < 1:
            raise BoltzflowError(f"workers must be at least 1, got {workers}")
        return min(workers, n_replicas)
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(n_replicas, cores or 1))


def _check_finite(energies: list[float], where: str) -> None:
    if not all(math.isfinite(e) for e in energies):
        raise BoltzflowError(
            f"the potential energy became {energies} at {where}: the dynamics blew up; use a "
            "smaller timestep_fs or check the system's starting positions"
        )


def _print_acceptance(pairs: list[dict[str, Any]]) -> None:
    from tqdm.auto import tqdm

    for pair in pairs:
        rate = pair["acceptance_rate"]
        t_lo, t_hi = pair["temperatures"]
        tqdm.write(
            f"exchange {t_lo:7.1f} K <-> {t_hi:7.1f} K: acceptance "
            + ("n/a" if rate is None else f"{rate:.3f}")
            + f" ({pair['accepted']}/{pair['attempts']})"
        )
