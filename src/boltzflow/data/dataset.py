"""``Dataset``: frames of a molecule (nm) with their reduced energies and full provenance."""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from ..conventions import kT
from ..errors import BoltzflowError
from ..systems.molecule import MolecularSystem
from . import files

if TYPE_CHECKING:
    import mdtraj

#: Trajectory formats, by file suffix, that :meth:`Dataset.export` and
#: :meth:`Dataset.from_trajectory` read and write (through mdtraj).
TRAJECTORY_SUFFIXES = (".pdb", ".dcd", ".xtc")


@dataclass
class Dataset:
    """Frames of one molecular system.

    Attributes:
        positions: ``[n, n_atoms, 3]`` float32, nm.
        energies: ``[n]`` float64, reduced energy ``u = U / kT`` at ``provenance["temperature"]``.
        time_ps: ``[n]`` float64, simulation time of each frame after equilibration (ps).
        replica: ``[n]`` int64, index of the replica (walker) a frame came from; all 0 without
            replica exchange.
        provenance: everything that produced the frames (see ``docs/md.md``).
        path: the dataset directory, or ``None`` for a dataset held only in memory.

    Example:
        >>> data = Dataset.load("aldp-md")  # doctest: +SKIP
        >>> data.positions.shape, data.system_id  # doctest: +SKIP
        (torch.Size([1000, 22, 3]), 'aldp-implicit')
    """

    positions: Tensor
    energies: Tensor
    time_ps: Tensor
    replica: Tensor
    provenance: dict[str, Any]
    path: Path | None = None
    _topology: Any = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.energies)

    @property
    def system_id(self) -> str:
        return self.provenance["system"]

    @property
    def temperature(self) -> float:
        return float(self.provenance["temperature"])

    @property
    def n_atoms(self) -> int:
        return int(self.positions.shape[1])

    @property
    def topology(self):
        """The mdtraj ``Topology`` (read from ``topology.pdb`` of a dataset on disk)."""
        if self._topology is None and self.path is not None:
            top_path = self.path / files.TOPOLOGY_NAME
            if top_path.is_file():
                import mdtraj

                self._topology = mdtraj.load_topology(str(top_path))
        return self._topology

    @classmethod
    def load(cls, path: str | Path, *, verify: bool = True) -> Dataset:
        """Read the dataset directory ``path``; with ``verify``, every chunk's size and sha256.

        Raises:
            BoltzflowError: not a dataset, or a chunk is missing, truncated or corrupt.
        """
        root = Path(path)
        prov = files.read_provenance(root)
        parts = [files.read_chunk(root, rec, verify=verify) for rec in prov["chunks"]]
        n_atoms = int(prov["n_atoms"])
        if parts:
            cat = {k: np.concatenate([p[k] for p in parts]) for k in files.CHUNK_KEYS}
        else:
            cat = {
                "positions": np.zeros((0, n_atoms, 3), np.float32),
                "energies": np.zeros(0),
                "steps": np.zeros(0, np.int64),
                "replica": np.zeros(0, np.int16),
            }
        dt_ps = float(prov.get("timestep_fs") or 0.0) / 1000.0
        return cls(
            positions=torch.from_numpy(cat["positions"].astype(np.float32, copy=False)),
            energies=torch.from_numpy(cat["energies"].astype(np.float64, copy=False)),
            time_ps=torch.from_numpy(cat["steps"].astype(np.float64) * dt_ps),
            replica=torch.from_numpy(cat["replica"].astype(np.int64)),
            provenance=prov,
            path=root,
        )

    @classmethod
    def from_trajectory(
        cls,
        traj_path: str | Path,
        top_path: str | Path | None,
        system: MolecularSystem,
        *,
        stride: int = 1,
        platform: str = "Reference",
    ) -> Dataset:
        """Bring your own trajectory (PDB, DCD or XTC) of ``system``; energies by OpenMM.

        Args:
            traj_path: trajectory file; the format follows the suffix.
            top_path: topology file (PDB) for the trajectory, or ``None`` to use the system's
                own topology (a PDB trajectory is its own topology).
            system: the :class:`~boltzflow.systems.molecule.MolecularSystem` the frames belong
                to; the atom count and elements must match its topology, in order.
            stride: keep every ``stride``-th frame.
            platform: OpenMM platform computing the reduced energies.

        Raises:
            BoltzflowError: missing file, unknown format, or atoms that do not match the system.
        """
        import mdtraj

        traj_path = Path(traj_path)
        _check_suffix(traj_path, "trajectory")
        if not traj_path.is_file():
            raise BoltzflowError(f"trajectory file {traj_path} does not exist")
        if top_path is not None and not Path(top_path).is_file():
            raise BoltzflowError(f"topology file {top_path} does not exist")
        n_sys = system.openmm_system.getNumParticles()
        if top_path is None and traj_path.suffix.lower() != ".pdb":
            with mdtraj.open(str(traj_path)) as f:
                n_file = f.read(n_frames=1)[0].shape[1]  # only the shape: DCD reads in Å
            _check_atom_count(n_file, n_sys, traj_path, system.id)
            traj = mdtraj.load(str(traj_path), top=system.topology, stride=stride)
        else:
            traj = mdtraj.load(str(traj_path), top=str(top_path or traj_path), stride=stride)
            _check_atom_count(traj.n_atoms, n_sys, traj_path, system.id)
            _check_elements(traj.topology, system.topology, traj_path, system.id)
        if traj.n_frames == 0:
            raise BoltzflowError(f"trajectory {traj_path} holds no frames")
        positions = traj.xyz.astype(np.float32)
        energies = _openmm_reduced_energies(system, positions, platform)
        if not np.isfinite(energies).all():
            bad = int(np.flatnonzero(~np.isfinite(energies))[0])
            raise BoltzflowError(
                f"frame {bad} of {traj_path} has a non-finite energy under {system.id!r}; "
                "check that the trajectory belongs to this system (atom order, units)"
            )
        dt_ps = float(traj.timestep) if traj.n_frames > 1 and traj.time[1] != traj.time[0] else 0.0
        import openmm

        from ..version import __version__

        prov = {
            "format": files.FORMAT,
            "format_version": files.FORMAT_VERSION,
            "source": "trajectory",
            "trajectory": str(traj_path.resolve()),
            "trajectory_sha256": files.sha256_file(traj_path),
            "topology_file": str(Path(top_path).resolve()) if top_path else None,
            "stride": stride,
            **system_provenance(system),
            "frame_interval_ps": dt_ps or None,
            "n_frames": int(traj.n_frames),
            "energy_platform": platform,
            "openmm_version": openmm.__version__,
            "boltzflow_version": __version__,
            "created": utc_now(),
            "chunks": [],
        }
        n = traj.n_frames
        return cls(
            positions=torch.from_numpy(positions),
            energies=torch.from_numpy(energies),
            time_ps=torch.arange(n, dtype=torch.float64) * dt_ps,
            replica=torch.zeros(n, dtype=torch.int64),
            provenance=prov,
            _topology=system.topology,
        )

    def save(self, path: str | Path) -> Path:
        """Write this dataset as a dataset directory (one chunk) readable by :meth:`load`."""
        root = Path(path)
        if (root / files.PROVENANCE_NAME).exists():
            raise BoltzflowError(f"{root} already holds a dataset; choose another path")
        dt_ps = float(self.provenance.get("timestep_fs") or 0.0) / 1000.0
        steps = (self.time_ps.numpy() / dt_ps).round() if dt_ps else np.arange(len(self))
        record = files.write_chunk(
            root,
            0,
            {
                "positions": self.positions.numpy().astype(np.float32),
                "energies": self.energies.numpy().astype(np.float64),
                "steps": np.asarray(steps, np.int64),
                "replica": self.replica.numpy().astype(np.int16),
            },
        )
        if self.topology is not None:
            write_topology_pdb(root, self.topology, self.positions[0].numpy())
        prov = {**self.provenance, "chunks": [record], "n_frames": len(self)}
        files.write_json_atomic(root / files.PROVENANCE_NAME, prov)
        self.path = root
        return root

    def to_mdtraj(self, topology: mdtraj.Topology | None = None) -> mdtraj.Trajectory:
        """An ``mdtraj.Trajectory`` of the frames (``topology`` defaults to the dataset's)."""
        import mdtraj

        top = topology if topology is not None else self.topology
        if top is None:
            raise BoltzflowError("this dataset has no topology; pass the system's topology")
        if top.n_atoms != self.n_atoms:
            raise BoltzflowError(
                f"topology has {top.n_atoms} atoms but the dataset has {self.n_atoms}"
            )
        time = self.time_ps.numpy() if len(self) else None
        return mdtraj.Trajectory(self.positions.numpy(), top, time=time)

    def export(self, path: str | Path, topology: mdtraj.Topology | None = None) -> Path:
        """Write the frames as PDB, DCD or XTC (chosen by ``path``'s suffix), atomically."""
        path = Path(path)
        _check_suffix(path, "export")
        traj = self.to_mdtraj(topology)
        tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            traj.save(str(tmp), force_overwrite=True)
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)
        return path


def write_topology_pdb(root: Path, topology: mdtraj.Topology, positions: np.ndarray) -> None:
    """Write ``topology.pdb`` (the molecule at ``positions`` ``[n_atoms, 3]`` nm) atomically."""
    import mdtraj

    path = root / files.TOPOLOGY_NAME
    tmp = path.with_name(f".{path.name}.tmp.pdb")
    try:
        mdtraj.Trajectory(np.asarray(positions, np.float32)[None], topology).save_pdb(str(tmp))
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def info(path: str | Path) -> str:
    """A readable multi-line summary of the dataset at ``path`` (cheap: no checksums)."""
    root = Path(path)
    p = files.read_provenance(root)
    lines = [f"dataset   {root}"]
    lines.append(
        f"system    {p['system']}  ({p.get('forcefield') or '?'}, {p.get('solvent') or '?'}, "
        f"{p['temperature']:g} K, {p['n_atoms']} atoms)"
    )
    n = p["n_frames"]
    if p.get("source") == "trajectory":
        lines.append(f"frames    {n} from {p['trajectory']} (stride {p.get('stride', 1)})")
    else:
        want = p.get("n_frames_requested", n)
        state = "complete" if n >= want else f"INCOMPLETE: {n} of {want}; rerun simulate"
        lines.append(
            f"frames    {n} every {p['frame_interval_ps']:g} ps = {n * p['frame_interval_ps'] / 1000:g} "
            f"ns after {p['equilibration_ps']:g} ps equilibration ({state})"
        )
        lines.append(
            f"MD        {p['integrator']}, {p['timestep_fs']:g} fs, friction "
            f"{p['friction_per_ps']:g}/ps, constraints {p['constraints']}, seed {p['seed']}, "
            f"platform {p['platform']}"
            + (f", hydrogens repartitioned to {p['hydrogen_mass_amu']:g} amu"
               if p.get("hydrogen_mass_amu") else "")
        )
        if p.get("ns_per_day"):
            per = " per replica" if p.get("replica_exchange") else ""
            lines.append(
                f"speed     {p['ns_per_day']:.0f} ns/day{per} ({p['wall_seconds']:.1f} s wall)"
            )
    rex = p.get("replica_exchange")
    if rex:
        temps = ", ".join(f"{t:g}" for t in rex["temperatures"])
        lines.append(
            f"replicas  {len(rex['temperatures'])} at {temps} K, exchange every "
            f"{rex['exchange_interval_ps']:g} ps; frames from the {rex['temperatures'][0]:g} K slot"
        )
        for pair in rex["pairs"]:
            rate = pair["acceptance_rate"]
            rate_s = "n/a" if rate is None else f"{rate:.3f}"
            lines.append(
                f"          {pair['temperatures'][0]:g} K <-> {pair['temperatures'][1]:g} K: "
                f"acceptance {rate_s} ({pair['accepted']}/{pair['attempts']})"
            )
    chunks = p.get("chunks", [])
    missing = [c["file"] for c in chunks if not (root / c["file"]).is_file()]
    size = sum(c["size"] for c in chunks)
    lines.append(
        f"files     {len(chunks)} chunks, {size / 1e6:.2f} MB"
        + (f"; MISSING: {', '.join(missing)}" if missing else "")
    )
    lines.append(
        f"created   {p.get('created')}  (OpenMM {p.get('openmm_version')}, "
        f"boltzflow {p.get('boltzflow_version')})"
    )
    return "\n".join(lines)


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def system_provenance(system: MolecularSystem) -> dict[str, Any]:
    """The provenance fields that pin a molecular system's energy (id, force field, solvent,
    temperature, atom count and a sha256 of the serialized OpenMM system)."""
    import openmm

    if not isinstance(system, MolecularSystem) or not system.temperature:
        raise BoltzflowError(
            f"system {system.id!r} is not a molecular system with an OpenMM system and a "
            "temperature; use a molecule such as aldp-implicit"
        )
    xml = openmm.XmlSerializer.serialize(system.openmm_system)
    return {
        "system": system.id,
        "forcefield": system.forcefield,
        "solvent": system.solvent,
        "temperature": float(system.temperature),
        "n_atoms": int(system.openmm_system.getNumParticles()),
        "openmm_system_sha256": hashlib.sha256(xml.encode()).hexdigest(),
    }


def _openmm_reduced_energies(system: MolecularSystem, positions: np.ndarray, platform: str) -> np.ndarray:
    """Reduced energies ``[n]`` (float64) of ``positions`` ``[n, n_atoms, 3]`` nm by OpenMM."""
    import openmm
    from openmm import unit

    integrator = openmm.VerletIntegrator(0.001)
    context = openmm.Context(
        system.openmm_system, integrator, openmm.Platform.getPlatformByName(platform)
    )
    out = np.empty(len(positions))
    for i, x in enumerate(positions):
        context.setPositions(x.astype(np.float64))
        e = context.getState(getEnergy=True).getPotentialEnergy()
        out[i] = e.value_in_unit(unit.kilojoule_per_mole)
    return out / kT(system.temperature)


def _check_suffix(path: Path, what: str) -> None:
    if path.suffix.lower() not in TRAJECTORY_SUFFIXES:
        raise BoltzflowError(
            f"{what} file {path} has unknown format {path.suffix!r}; use one of "
            f"{', '.join(TRAJECTORY_SUFFIXES)}"
        )


def _check_atom_count(n_traj: int, n_sys: int, path: Path, system_id: str) -> None:
    if n_traj != n_sys:
        raise BoltzflowError(
            f"trajectory {path} has {n_traj} atoms but system {system_id!r} has {n_sys}; "
            "give the trajectory of this system (same atoms, same order)"
        )


def _check_elements(top: mdtraj.Topology, ref: mdtraj.Topology, path: Path, system_id: str) -> None:
    for a, b in zip(top.atoms, ref.atoms):
        ea, eb = getattr(a.element, "symbol", None), getattr(b.element, "symbol", None)
        if ea != eb:
            raise BoltzflowError(
                f"atom {a.index} of {path} is {ea} ({a}) but in system {system_id!r} it is "
                f"{eb} ({b}); the atom order must match the system's topology"
            )
