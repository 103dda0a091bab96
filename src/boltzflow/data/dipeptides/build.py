"""Building a dipeptide dataset: MD of each peptide, resumable, sharded over local worker
processes and ``torchrun`` ranks, with ``index.json`` rewritten atomically as peptides finish.

Rerunning a build resumes each unfinished peptide where it stopped; an interrupted build
never leaves a stale or half-written index.
"""

from __future__ import annotations

import hashlib
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import BoltzflowError
from ...io import remove_stale_temporaries
from .. import files
from .catalogue import AMINO_ACID_LETTERS, TEMPERATURE, normalize_sequences, split_of
from .index import INDEX_NAME, DipeptideIndex, PeptideEntry, write_index


def peptide_seed(seed: int, sequence: str) -> int:
    """The MD seed of ``sequence`` in a build with ``seed`` (a non-negative 31-bit integer).

    It depends on ``(seed, sequence)`` only, never on the worker or rank that simulates the
    peptide, so any sharding of a build produces the same frames.
    """
    digest = hashlib.blake2b(f"dipeptide:{int(seed)}:{sequence}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFFFFFF


#: MD settings that every peptide of one dataset directory shares (all but the length).
_FIXED_MD_KEYS = (
    "timestep_fs",
    "friction_per_ps",
    "frame_interval_ps",
    "equilibration_ps",
    "replica_temperatures",
    "exchange_interval_ps",
    "seed",
    "hydrogen_mass_amu",
)


def _md_settings(
    *,
    ns: float,
    timestep_fs: float,
    friction_per_ps: float,
    frame_interval_ps: float,
    equilibration_ps: float,
    replicas: int,
    t_max: float,
    exchange_interval_ps: float,
    seed: int,
    platform: str,
    frames_per_chunk: int,
    hydrogen_mass_amu: float | None = None,
) -> dict[str, Any]:
    """The validated MD settings of a build (what ``index.json`` records under ``"md"``)."""
    from ...md import SimulationPlan, geometric_temperatures
    from ...md.walkers import check_hydrogen_mass

    check_hydrogen_mass(hydrogen_mass_amu)

    if not (isinstance(ns, (int, float)) and math.isfinite(ns) and ns > 0):
        raise BoltzflowError(f"ns (--ns) must be > 0 nanoseconds of MD per peptide, got {ns!r}")
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
        raise BoltzflowError(
            f"replicas must be a whole number >= 1 (1: plain MD, >= 2: parallel tempering), "
            f"got {replicas!r}"
        )
    ladder = None
    if replicas > 1:
        if not (isinstance(t_max, (int, float)) and t_max > TEMPERATURE):
            raise BoltzflowError(
                f"t_max must be above the peptides' {TEMPERATURE:g} K for parallel tempering, "
                f"got {t_max!r}"
            )
        ladder = geometric_temperatures(TEMPERATURE, float(t_max), replicas)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise BoltzflowError(f"seed must be a whole number >= 0, got {seed!r}")
    plan = SimulationPlan.make(  # the same checks (and messages) as boltzflow.md.simulate
        TEMPERATURE,
        ns=ns,
        timestep_fs=timestep_fs,
        friction_per_ps=friction_per_ps,
        frame_interval_ps=frame_interval_ps,
        replicas=ladder,
        exchange_interval_ps=exchange_interval_ps,
        equilibration_ps=equilibration_ps,
        frames_per_chunk=frames_per_chunk,
    )
    return {
        "ns": float(ns),
        "n_frames": plan.n_frames,
        "timestep_fs": float(timestep_fs),
        "friction_per_ps": float(friction_per_ps),
        "frame_interval_ps": float(frame_interval_ps),
        "equilibration_ps": float(equilibration_ps),
        "replicas": replicas,
        "t_max": float(t_max) if ladder else None,
        "replica_temperatures": ladder,
        "exchange_interval_ps": float(exchange_interval_ps) if ladder else None,
        "seed": int(seed),
        "seed_rule": "each peptide's MD seed is boltzflow.data.dipeptides.peptide_seed(seed, XY)",
        "platform": platform,
        "frames_per_chunk": int(frames_per_chunk),
        "integrator": "LangevinMiddleIntegrator",
        "hydrogen_mass_amu": None if hydrogen_mass_amu is None else float(hydrogen_mass_amu),
    }


def _expected_provenance(sequence: str, md: dict[str, Any]) -> dict[str, Any]:
    """Provenance fields the MD dataset of ``sequence`` must have to belong to this build."""
    expected = {key: md.get(key) for key in _FIXED_MD_KEYS}  # older indexes: no hydrogen mass
    expected["seed"] = peptide_seed(md["seed"], sequence)
    return {"system": f"dipeptide:{sequence}", "temperature": TEMPERATURE, **expected}


@dataclass(frozen=True)
class _Status:
    """What is on disk for one peptide: ``missing``, ``partial``, ``complete`` or ``foreign``."""

    state: str
    n_frames: int = 0
    n_atoms: int = 0
    detail: str = ""


def _peptide_status(
    root: Path, sequence: str, md: dict[str, Any], *, need: int | None, verify: bool
) -> _Status:
    """The state of ``root/sequence`` for this build.

    ``complete`` means at least ``need`` frames (``None``: the frames its own run asked for),
    and, with ``verify``, every chunk present with its recorded size and sha256.
    """
    directory = root / sequence
    if not (directory / files.PROVENANCE_NAME).is_file():
        return _Status("missing")
    try:
        prov = files.read_provenance(directory)
    except BoltzflowError as exc:
        return _Status("partial", detail=str(exc))
    expected = _expected_provenance(sequence, md)
    differing = [k for k, v in expected.items() if prov.get(k) != v]
    if prov.get("source") != "md":
        differing.insert(0, "source")
    if differing:
        detail = ", ".join(
            f"{k}: {prov.get(k)!r} there vs {expected.get(k, 'md')!r} now" for k in differing[:3]
        )
        return _Status("foreign", detail=detail)
    records = prov.get("chunks") or []
    n_frames = sum(int(r["n_frames"]) for r in records)
    n_atoms = int(prov.get("n_atoms", 0))
    target = int(prov.get("n_frames_requested", 0)) if need is None else need
    if n_frames < max(1, target) or n_frames != int(prov.get("n_frames", -1)):
        return _Status("partial", n_frames, n_atoms)
    if verify:
        for record in records:
            problem = files.chunk_problem(directory, record)
            if problem is not None:
                return _Status("partial", n_frames, n_atoms, detail=problem)
    return _Status("complete", n_frames, n_atoms)


def _entry(sequence: str, status: _Status) -> PeptideEntry:
    return PeptideEntry(
        sequence=sequence,
        system_id=f"dipeptide:{sequence}",
        path=sequence,
        split=split_of(sequence),
        n_frames=status.n_frames,
        n_atoms=status.n_atoms,
    )


def _peptide_dirs(root: Path) -> list[str]:
    """Names of the subdirectories of ``root`` that hold (part of) a peptide's MD dataset."""
    if not root.is_dir():
        return []
    return sorted(
        d.name
        for d in root.iterdir()
        if len(d.name) == 2
        and all(c in AMINO_ACID_LETTERS for c in d.name)
        and (d / files.PROVENANCE_NAME).is_file()
    )


def _check_existing(root: Path, md: dict[str, Any]) -> None:
    """Refuse to mix MD settings: every peptide already in ``root`` must share this build's."""
    for seq in _peptide_dirs(root):
        status = _peptide_status(root, seq, md, need=None, verify=False)
        if status.state == "foreign":
            raise BoltzflowError(
                f"{root / seq} holds MD of {seq} with other settings ({status.detail}); one "
                "dipeptide dataset holds one set of MD settings: use the settings it was built "
                "with, another --out, or delete that peptide's directory"
            )


def _scan(root: Path, md: dict[str, Any]) -> dict[str, PeptideEntry]:
    """Every complete peptide dataset in ``root``, verified chunk by chunk."""
    entries = {}
    for seq in _peptide_dirs(root):
        status = _peptide_status(root, seq, md, need=None, verify=True)
        if status.state == "complete":
            entries[seq] = _entry(seq, status)
    return entries


@contextmanager
def _peptide_lock(root: Path, sequence: str) -> Iterator[None]:
    """Hold an exclusive lock on one peptide (released by the OS if the process dies).

    Only one process at a time simulates a peptide, even when a killed build left workers
    running or two builds share a directory.
    """
    import fcntl

    try:
        handle = open(root / f".{sequence}.lock", "a")  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise BoltzflowError(
            f"cannot write in {root}: {exc.strerror or exc}; choose another --out "
            "(finished peptides there are intact)"
        ) from exc
    with handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _init_worker(parent: int) -> None:
    """Set up a pool worker: one torch thread, Ctrl-C left to the parent, die with the parent."""
    import signal

    import torch

    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the workers on Ctrl-C
    if sys.platform.startswith("linux"):
        try:  # a worker must not outlive a SIGKILLed build (PR_SET_PDEATHSIG = 1)
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _run_peptide(job: dict[str, Any], callback: Callable[[int, int], None] | None = None) -> dict:
    """Simulate one peptide into ``root/XY`` (resuming); skip it if it is already complete."""
    from ... import systems
    from ...md import simulate

    root, seq, md = Path(job["root"]), job["sequence"], job["md"]
    t0 = time.perf_counter()
    with _peptide_lock(root, seq):
        status = _peptide_status(root, seq, md, need=md["n_frames"], verify=True)
        skipped = status.state == "complete"
        if not skipped:
            for sub in ("", "chunks", "state"):  # temporaries of a process killed mid-write
                if (root / seq / sub).is_dir():
                    remove_stale_temporaries(root / seq / sub, "")
            data = simulate(
                systems.get(f"dipeptide:{seq}"),
                root / seq,
                ns=md["ns"],
                timestep_fs=md["timestep_fs"],
                friction_per_ps=md["friction_per_ps"],
                frame_interval_ps=md["frame_interval_ps"],
                seed=peptide_seed(md["seed"], seq),
                platform=md["platform"],
                replicas=md["replica_temperatures"],
                exchange_interval_ps=md["exchange_interval_ps"] or 1.0,
                equilibration_ps=md["equilibration_ps"],
                frames_per_chunk=md["frames_per_chunk"],
                progress=False,
                callback=callback,
                hydrogen_mass_amu=md.get("hydrogen_mass_amu"),
            )
            status = _Status("complete", len(data), data.n_atoms)
    return {
        "sequence": seq,
        "n_frames": status.n_frames,
        "n_atoms": status.n_atoms,
        "seconds": time.perf_counter() - t0,
        "skipped": skipped,
    }


def _rank_and_size() -> tuple[int, int]:
    """This process's rank and the world size (the process group is started under torchrun)."""
    from ...training.distributed import init

    w = init()
    return w.rank, w.size


def build_dipeptide_dataset(
    out: str | Path,
    sequences: str | list[str] | tuple[str, ...],
    *,
    ns: float,
    frame_interval_ps: float = 1.0,
    replicas: int = 1,
    t_max: float = 600.0,
    exchange_interval_ps: float = 1.0,
    timestep_fs: float = 1.0,
    friction_per_ps: float = 1.0,
    equilibration_ps: float = 100.0,
    seed: int = 0,
    workers: int = 1,
    platform: str = "Reference",
    frames_per_chunk: int = 1000,
    progress: bool = True,
    poll_seconds: float = 1.0,
    hydrogen_mass_amu: float | None = None,
) -> DipeptideIndex:
    """Run MD of each dipeptide into ``out/XY`` and write ``out/index.json``.

    Every peptide gets Langevin MD by :func:`boltzflow.md.simulate` (amber14 + OBC2, 310 K),
    seeded by :func:`peptide_seed` so the frames do not depend on how the work is split.
    Peptides already complete in ``out`` are skipped and partial ones resume, so rerunning
    the same call after an interruption finishes the job. The work is split over ``workers``
    local processes and, under ``torchrun``, over ranks (rank ``r`` of ``W`` takes the
    peptides ``i`` with ``i % W == r``); rank 0 waits for all of them on disk and writes the
    index. ``out`` must then be on a file system every rank sees.

    Args:
        out: dataset directory (created).
        sequences: ``["AC", "KI"]`` or ``"AC,KI"`` (see :data:`TEST_SEQUENCES`,
            :func:`default_train_sequences`, :func:`all_sequences`).
        ns: production MD per peptide (ns); a rerun with a larger ``ns`` extends each peptide.
        frame_interval_ps: time between saved frames (ps).
        replicas: 1 for plain MD, ``n >= 2`` for parallel tempering over a geometric ladder of
            ``n`` temperatures from 310 K to ``t_max``.
        t_max: highest replica temperature (K).
        exchange_interval_ps: time between replica exchange attempts (ps).
        timestep_fs: integration time step (fs).
        friction_per_ps: Langevin friction (1/ps).
        equilibration_ps: unsaved MD before the first frame (ps).
        seed: base seed; peptide ``XY`` uses ``peptide_seed(seed, "XY")``.
        workers: local worker processes (each with one torch thread).
        platform: OpenMM platform (``Reference`` is fastest for these tens of atoms).
        frames_per_chunk: frames per chunk file (the unit of resumption within a peptide).
        progress: a bar over peptides and one line per finished peptide (rank 0).
        poll_seconds: how often rank 0 looks for peptides finished by other ranks.
        hydrogen_mass_amu: hydrogen mass repartitioning (:func:`boltzflow.md.simulate`), e.g.
            3 with ``timestep_fs=2``: the same configurations at half the cost.

    Returns:
        The :class:`DipeptideIndex` of every complete peptide in ``out``.

    Raises:
        BoltzflowError: a malformed sequence, bad settings, ``out`` not writable, or ``out``
            holding peptides simulated with other MD settings.
    """
    seqs = normalize_sequences(sequences)
    md = _md_settings(
        ns=ns,
        timestep_fs=timestep_fs,
        friction_per_ps=friction_per_ps,
        frame_interval_ps=frame_interval_ps,
        equilibration_ps=equilibration_ps,
        replicas=replicas,
        t_max=t_max,
        exchange_interval_ps=exchange_interval_ps,
        seed=seed,
        platform=platform,
        frames_per_chunk=frames_per_chunk,
        hydrogen_mass_amu=hydrogen_mass_amu,
    )
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise BoltzflowError(f"workers must be a whole number >= 1, got {workers!r}")
    from ...md.walkers import platform_by_name

    platform_by_name(platform)
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise BoltzflowError(f"--out {root} is a file; give a directory for the dipeptide dataset")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BoltzflowError(
            f"cannot create --out {root}: {exc.strerror or exc}; choose another --out"
        ) from exc
    _check_existing(root, md)
    rank, size = _rank_and_size()
    need = md["n_frames"]
    is_main = rank == 0
    # rank 0 owns the index: start from what is complete on disk (verified), add as peptides finish
    entries = _scan(root, md) if is_main else {}
    if is_main:
        remove_stale_temporaries(root, INDEX_NAME)
        done = {s for s in seqs if s in entries and entries[s].n_frames >= need}
        if entries:
            write_index(root, md, entries)
    else:  # a quick look; the worker verifies every chunk before it skips a peptide
        done = {
            s
            for s in seqs
            if _peptide_status(root, s, md, need=need, verify=False).state == "complete"
        }
    mine = [s for i, s in enumerate(seqs) if i % size == rank and s not in done]

    from tqdm.auto import tqdm

    bar = tqdm(
        total=len(seqs),
        initial=len(done),
        unit="peptide",
        desc="dipeptides",
        dynamic_ncols=True,
        disable=not (progress and is_main),
    )
    prefix = f"[rank {rank}] " if size > 1 else ""

    def finished(result: dict[str, Any]) -> None:
        seq = result["sequence"]
        if progress:
            how = "already complete" if result["skipped"] else f"{result['seconds']:.1f} s"
            line = (
                f"{prefix}{seq} ({split_of(seq)}): {result['n_frames']} frames, "
                f"{result['n_atoms']} atoms, {how}"
            )
            if is_main:
                bar.write(line)
            else:
                print(line, flush=True)
        if is_main:
            _record(seq)

    def _record(seq: str) -> None:
        status = _peptide_status(root, seq, md, need=need, verify=True)
        if status.state != "complete":
            raise BoltzflowError(f"{root / seq} is not complete after its MD ({status.detail})")
        entries[seq] = _entry(seq, status)
        done.add(seq)
        write_index(root, md, entries)
        bar.update(1)

    try:
        _run_shard(root, mine, md, workers, finished, bar if is_main else None)
        if is_main:
            waiting = [s for s in seqs if s not in done]
            while waiting:  # peptides of other ranks
                for seq in waiting:
                    if _peptide_status(root, seq, md, need=need, verify=False).state == "complete":
                        _record(seq)
                waiting = [s for s in seqs if s not in done]
                if waiting:
                    time.sleep(poll_seconds)
            index = write_index(root, md, entries)
        else:
            while any(
                _peptide_status(root, s, md, need=need, verify=False).state != "complete"
                for s in seqs
            ):
                time.sleep(poll_seconds)
            scanned = _scan(root, md)
            index = DipeptideIndex(root, [scanned[s] for s in sorted(scanned)], md)
    finally:
        bar.close()
    return index


def _run_shard(
    root: Path,
    todo: list[str],
    md: dict[str, Any],
    workers: int,
    finished: Callable[[dict[str, Any]], None],
    bar: Any,
) -> None:
    """Simulate the peptides ``todo`` here (one worker) or in a pool of spawned processes."""
    jobs = [{"root": str(root), "sequence": s, "md": md} for s in todo]
    if workers == 1 or len(jobs) <= 1:
        for job in jobs:

            def show(k: int, n: int, seq: str = job["sequence"]) -> None:
                if bar is not None:
                    bar.set_postfix_str(f"{seq} {k}/{n} frames")

            finished(_run_peptide(job, show))
        return
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    before = set(multiprocessing.active_children())
    pool = ProcessPoolExecutor(
        max_workers=min(workers, len(jobs)),
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(os.getpid(),),
    )
    try:
        futures = [pool.submit(_run_peptide, job) for job in jobs]
        for future in as_completed(futures):
            finished(future.result())
    except BrokenProcessPool as exc:
        _stop_workers(before)
        raise BoltzflowError(
            f"a worker process died while simulating ({exc}); finished peptides are kept in "
            f"{root}: rerun the same command to resume (fewer --workers if memory ran out)"
        ) from exc
    except BaseException:  # Ctrl-C or an error: stop now, not after the queued peptides
        _stop_workers(before)
        raise
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _stop_workers(before: set[multiprocessing.process.BaseProcess]) -> None:
    """Terminate the child processes started since ``before`` was taken: the pool's workers.

    Everything they wrote is atomic and resumable.
    """
    workers = [p for p in multiprocessing.active_children() if p not in before]
    for process in workers:
        process.terminate()
    for process in workers:
        process.join(timeout=10)
