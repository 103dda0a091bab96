"""MD into datasets: provenance, energies against OpenMM, resume, corruption, PT, export, import."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from boltzflow import systems
from boltzflow.data import Dataset, info
from boltzflow.errors import BoltzflowError
from boltzflow.md import geometric_temperatures, simulate

mdtraj = pytest.importorskip("mdtraj")
openmm = pytest.importorskip("openmm")

# short runs: 0.1 ps frames, small chunks so that resumption has several boundaries
FAST = {"frame_interval_ps": 0.1, "equilibration_ps": 1.0, "frames_per_chunk": 8, "progress": False}


@pytest.fixture(scope="module")
def molecule():
    return systems.get("aldp-vacuum")


@pytest.fixture(scope="module")
def dataset(molecule, tmp_path_factory) -> Dataset:
    return simulate(molecule, tmp_path_factory.mktemp("md") / "ds", ns=0.002, **FAST)


def openmm_reduced(system, positions: np.ndarray) -> np.ndarray:
    context = openmm.Context(
        system.openmm_system,
        openmm.VerletIntegrator(0.001),
        openmm.Platform.getPlatformByName("Reference"),
    )
    out = []
    for x in positions:
        context.setPositions(x.astype(np.float64))
        out.append(context.getState(getEnergy=True).getPotentialEnergy()._value)
    kt = (
        openmm.unit.MOLAR_GAS_CONSTANT_R.value_in_unit(
            openmm.unit.kilojoule_per_mole / openmm.unit.kelvin
        )
        * system.temperature
    )
    return np.array(out) / kt


def test_dataset_layout_and_provenance(dataset, molecule):
    assert dataset.positions.shape == (20, molecule.openmm_system.getNumParticles(), 3)
    assert dataset.positions.dtype == torch.float32 and dataset.energies.shape == (20,)
    assert torch.allclose(dataset.time_ps, 0.1 * torch.arange(1, 21, dtype=torch.float64))
    p = dataset.provenance
    assert dataset.system_id == p["system"] == molecule.id
    assert (p["forcefield"], p["solvent"], p["temperature"]) == ("amber99sb-ildn", "vacuum", 300.0)
    assert (p["integrator"], p["timestep_fs"], p["friction_per_ps"]) == (
        "LangevinMiddleIntegrator",
        1.0,
        1.0,
    )
    assert p["constraints"] == "none" and p["seed"] == 0 and p["frame_interval_ps"] == 0.1
    assert p["openmm_version"] == openmm.__version__ and p["platform"] == "Reference"
    assert p["n_frames"] == 20 and p["replica_exchange"] is None and p["ns_per_day"] > 0
    assert [c["n_frames"] for c in p["chunks"]] == [8, 8, 4]
    assert all(len(c["sha256"]) == 64 and c["size"] > 0 for c in p["chunks"])
    text = info(dataset.path)
    assert molecule.id in text and "20 every 0.1 ps" in text and "complete" in text


def test_energies_are_openmm_reduced_energies(dataset, molecule):
    expected = openmm_reduced(molecule, dataset.positions.numpy())
    # frames are stored as float32: the energy of the rounded positions differs by ~1e-4 kT
    np.testing.assert_allclose(dataset.energies.numpy(), expected, atol=1e-2)
    assert dataset.energies.std() > 0.5  # a moving trajectory, not one repeated frame


@pytest.mark.parametrize("replicas", [None, [300.0, 400.0]])
def test_interrupted_run_resumes_bit_identically(molecule, tmp_path, replicas):
    reference = simulate(molecule, tmp_path / "ref", ns=0.004, replicas=replicas, **FAST)

    def interrupt(done: int, total: int) -> None:
        if done >= 16:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        simulate(
            molecule, tmp_path / "run", ns=0.004, replicas=replicas, callback=interrupt, **FAST
        )
    assert len(Dataset.load(tmp_path / "run")) == 16
    shorter = simulate(molecule, tmp_path / "run", ns=0.002, replicas=replicas, **FAST)
    assert len(shorter) == 20  # extends 16 -> 20 frames, then on to 40 below
    resumed = simulate(molecule, tmp_path / "run", ns=0.004, replicas=replicas, **FAST)
    assert torch.equal(resumed.positions, reference.positions)
    assert torch.equal(resumed.energies, reference.energies)
    assert torch.equal(resumed.time_ps, reference.time_ps)  # no frame lost or duplicated
    assert resumed.provenance["replica_exchange"] == reference.provenance["replica_exchange"]


def test_resume_on_another_platform_continues_from_positions_and_velocities(molecule, tmp_path):
    first = simulate(molecule, tmp_path / "ds", ns=0.0016, **FAST)
    with pytest.warns(UserWarning, match="another platform"):
        more = simulate(molecule, tmp_path / "ds", ns=0.0024, platform="CPU", **FAST)
    assert torch.equal(more.positions[:16], first.positions)
    assert torch.allclose(more.time_ps, 0.1 * torch.arange(1, 25, dtype=torch.float64))
    assert more.provenance["platforms_used"] == ["Reference", "CPU"]
    # the continuation starts where the first run stopped, not from a fresh start
    jumps = (more.positions[1:] - more.positions[:-1]).norm(dim=-1).max(dim=-1).values
    assert jumps[15] < 1.5 * jumps[:15].max()


def test_sigkill_resumes(molecule, tmp_path):
    script = textwrap.dedent(f"""
        import sys
        from boltzflow import systems
        from boltzflow.md import simulate
        simulate(systems.get("aldp-vacuum"), sys.argv[1], ns=float(sys.argv[2]),
                 **{{**{FAST!r}, "frames_per_chunk": 50}})
    """)
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(out), "1000"], env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            prov = out / "provenance.json"
            if prov.exists() and len(json.loads(prov.read_text())["chunks"]) >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the simulation ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    killed = Dataset.load(out)
    assert len(killed) >= 100 and len(killed) % 50 == 0
    n = len(killed) + 50
    resumed = simulate(molecule, out, ns=n * 1e-4, **{**FAST, "frames_per_chunk": 50})
    reference = simulate(
        molecule, tmp_path / "ref", ns=n * 1e-4, **{**FAST, "frames_per_chunk": 50}
    )
    assert torch.equal(resumed.positions, reference.positions)
    assert torch.equal(resumed.time_ps, reference.time_ps)


def test_corrupt_or_truncated_chunk_is_detected_and_redone(molecule, tmp_path):
    out = tmp_path / "ds"
    original = simulate(molecule, out, ns=0.002, **FAST)
    chunk = out / "chunks" / "chunk-00001.npz"

    data = chunk.read_bytes()
    chunk.write_bytes(data[: len(data) // 2])
    with pytest.raises(BoltzflowError, match="chunk-00001.npz has .* bytes.*truncated"):
        Dataset.load(out)
    assert "20 every" in info(out)  # info stays cheap and readable
    with pytest.warns(UserWarning, match="chunk-00001"):
        redone = simulate(molecule, out, ns=0.002, **FAST)
    assert torch.equal(redone.positions, original.positions)

    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different bytes
    chunk.write_bytes(bytes(data))
    with pytest.raises(BoltzflowError, match="sha256"):
        Dataset.load(out)
    chunk.unlink()
    with pytest.raises(BoltzflowError, match="missing"):
        Dataset.load(out)


def test_parallel_tempering_reports_acceptance(molecule, tmp_path):
    temps = geometric_temperatures(300.0, 450.0, 3)
    data = simulate(
        molecule, tmp_path / "pt", ns=0.002, replicas=temps, exchange_interval_ps=0.05, **FAST
    )
    rex = data.provenance["replica_exchange"]
    assert rex["temperatures"] == temps and len(rex["pairs"]) == 2
    for pair in rex["pairs"]:
        assert pair["attempts"] == 20  # 40 rounds, each pair every other round
        assert 0.0 <= pair["acceptance_rate"] <= 1.0
    assert set(data.replica.tolist()) <= {0, 1, 2}
    expected = openmm_reduced(molecule, data.positions.numpy())
    np.testing.assert_allclose(data.energies.numpy(), expected, atol=1e-2)  # 300 K energies
    assert "acceptance" in info(data.path)


@pytest.mark.parametrize("suffix", [".pdb", ".dcd", ".xtc"])
def test_export_and_reimport(dataset, molecule, tmp_path, suffix):
    path = dataset.export(tmp_path / f"traj{suffix}")
    top = None if suffix == ".pdb" else dataset.path / "topology.pdb"
    traj = mdtraj.load(str(path), top=str(top or path))
    assert traj.n_frames == len(dataset) and traj.n_atoms == dataset.n_atoms
    np.testing.assert_allclose(traj.xyz, dataset.positions.numpy(), atol=2e-3)

    again = Dataset.from_trajectory(path, top, molecule)
    # energies by OpenMM of the re-read frames; PDB keeps 1e-4 nm, XTC 1e-3 nm
    atol = {".pdb": 1.0, ".dcd": 1e-2, ".xtc": 8.0}[suffix]
    np.testing.assert_allclose(again.energies.numpy(), dataset.energies.numpy(), atol=atol)
    assert again.provenance["source"] == "trajectory" and again.system_id == molecule.id
    if suffix != ".pdb":  # without a topology file the system's topology is used
        alone = Dataset.from_trajectory(path, None, molecule)
        assert torch.equal(alone.positions, again.positions)
    saved = Dataset.load(again.save(tmp_path / f"imported{suffix[1:]}"))
    assert torch.equal(saved.positions, again.positions) and "stride 1" in info(saved.path)


def test_trajectory_of_another_molecule_is_refused(dataset, molecule, tmp_path):
    traj = dataset.to_mdtraj().atom_slice(range(20))
    traj.save_dcd(str(tmp_path / "short.dcd"))
    traj[0].save_pdb(str(tmp_path / "short.pdb"))
    n = molecule.openmm_system.getNumParticles()
    for top in (None, tmp_path / "short.pdb"):
        with pytest.raises(BoltzflowError, match=f"has 20 atoms but system .* has {n}"):
            Dataset.from_trajectory(tmp_path / "short.dcd", top, molecule)
    with pytest.raises(BoltzflowError, match="unknown format"):
        Dataset.from_trajectory(tmp_path / "short.nc", None, molecule)


def test_bad_settings_are_clear_errors(molecule, dataset, tmp_path):
    with pytest.raises(BoltzflowError, match="ns must be a positive"):
        simulate(molecule, tmp_path / "x", ns=0, **FAST)
    with pytest.raises(BoltzflowError, match="unknown OpenMM platform 'Nope'.*Reference"):
        simulate(molecule, tmp_path / "x", ns=0.001, platform="Nope", **FAST)
    with pytest.raises(BoltzflowError, match="start with the system temperature 300 K"):
        simulate(molecule, tmp_path / "x", ns=0.001, replicas=[310.0, 400.0], **FAST)
    with pytest.raises(BoltzflowError, match="strictly increasing"):
        simulate(molecule, tmp_path / "x", ns=0.001, replicas=[300.0, 300.0], **FAST)
    with pytest.raises(BoltzflowError, match="not a whole number"):
        simulate(
            molecule,
            tmp_path / "x",
            ns=0.001,
            timestep_fs=2.0,
            **{**FAST, "frame_interval_ps": 0.015},
        )
    with pytest.raises(
        BoltzflowError,
        match=r"different settings \(timestep_fs: 1.0 there vs "
        r"0.5 now, seed: 0 there vs 1 now\)",
    ):
        simulate(molecule, dataset.path, ns=0.002, seed=1, timestep_fs=0.5, **FAST)
    with pytest.raises(BoltzflowError, match="not a boltzflow dataset"):
        Dataset.load(tmp_path / "nothing")


def test_replicas_in_worker_processes_resume_exactly_and_sample_the_target(molecule, tmp_path):
    temps = geometric_temperatures(300.0, 450.0, 3)
    kw = {"ns": 0.004, "replicas": temps, "exchange_interval_ps": 0.05, **FAST}
    whole = simulate(molecule, tmp_path / "whole", workers=2, **kw)

    def interrupt(done: int, total: int) -> None:
        if done >= 16:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        simulate(molecule, tmp_path / "parallel", workers=2, callback=interrupt, **kw)
    resumed = simulate(molecule, tmp_path / "parallel", workers=2, **kw)
    assert torch.equal(resumed.positions, whole.positions)
    assert resumed.provenance["replica_exchange"] == whole.provenance["replica_exchange"]
    assert whole.provenance["workers"] == 2
    expected = openmm_reduced(molecule, whole.positions.numpy())
    np.testing.assert_allclose(whole.energies.numpy(), expected, atol=1e-2)  # 300 K frames
    serial = simulate(molecule, tmp_path / "serial", workers=1, **kw)
    pairs = zip(serial.provenance["replica_exchange"]["pairs"],
                whole.provenance["replica_exchange"]["pairs"])
    assert all(a["attempts"] == b["attempts"] for a, b in pairs)
    with pytest.raises(BoltzflowError, match="workers"):
        simulate(molecule, tmp_path / "bad", workers=0, **kw)


def test_hydrogen_mass_repartitioning_moves_mass_not_forces(molecule):
    from boltzflow.md.walkers import repartition_hydrogen_mass

    system = molecule.openmm_system
    heavy = repartition_hydrogen_mass(system, 3.0)
    old = np.array([system.getParticleMass(i)._value for i in range(system.getNumParticles())])
    new = np.array([heavy.getParticleMass(i)._value for i in range(heavy.getNumParticles())])
    hydrogens = old < 1.5
    assert hydrogens.sum() == 12  # ACE-ALA-NME
    np.testing.assert_allclose(new[hydrogens], 3.0)
    assert new.sum() == pytest.approx(old.sum(), abs=1e-9)
    # each heavy atom gave exactly what its hydrogens gained: the methyl carbons 3 x 1.992
    gained = {int(i): 0.0 for i in np.flatnonzero(~hydrogens)}
    bonds = [f for f in system.getForces() if isinstance(f, openmm.HarmonicBondForce)][0]
    for k in range(bonds.getNumBonds()):
        a, b, *_ = bonds.getBondParameters(k)
        if hydrogens[a] != hydrogens[b]:
            gained[b if hydrogens[a] else a] += 3.0 - old[a if hydrogens[a] else b]
    for i, g in gained.items():
        assert new[i] == pytest.approx(old[i] - g, abs=1e-9)
    assert min(new[~hydrogens]) == pytest.approx(12.011 - 3 * (3.0 - 1.008), abs=1e-3)
    assert system.getParticleMass(0)._value == old[0]  # the original is untouched
    x = np.asarray(molecule.positions)
    e = [openmm.Context(s, openmm.VerletIntegrator(0.001),
                        openmm.Platform.getPlatformByName("Reference")) for s in (system, heavy)]
    for c in e:
        c.setPositions(x)
    assert e[0].getState(getEnergy=True).getPotentialEnergy()._value == \
        e[1].getState(getEnergy=True).getPotentialEnergy()._value
    with pytest.raises(BoltzflowError, match=r"hydrogen_mass_amu must be a number in \(1, 5\]"):
        repartition_hydrogen_mass(system, 0.5)
    with pytest.raises(BoltzflowError, match="leaves atom 0 with .* amu"):
        repartition_hydrogen_mass(system, 5.0)  # methyl carbon: 12.01 - 3 x 3.99 < 1


@pytest.mark.parametrize("workers", [1, 2])
def test_md_with_repartitioned_hydrogens(molecule, tmp_path, monkeypatch, workers):
    import importlib

    simulate_module = importlib.import_module("boltzflow.md.simulate")
    from boltzflow.md.parallel import ParallelWalkers
    from boltzflow.md.walkers import Walkers

    seen = []  # the mass of hydrogen 1 in the System every walker set integrates
    for cls, name in ((Walkers, "Walkers"), (ParallelWalkers, "ParallelWalkers")):
        def record(openmm_system, *args, _cls=cls, **kwargs):
            seen.append(openmm_system.getParticleMass(1)._value)
            return _cls(openmm_system, *args, **kwargs)
        monkeypatch.setattr(simulate_module, name, record)
    kw = {"ns": 0.002, "timestep_fs": 2.0, "replicas": [300.0, 400.0], "workers": workers,
          **{**FAST, "frame_interval_ps": 0.1}}
    ds = simulate(molecule, tmp_path / "hmr", hydrogen_mass_amu=4.0, **kw)
    heavy_h = molecule.openmm_system.getParticleMass(1)._value
    assert heavy_h == pytest.approx(1.008, abs=1e-3)  # atom 1 is a methyl hydrogen of ACE (atom 0 its C)
    assert seen == [4.0]
    assert ds.provenance["hydrogen_mass_amu"] == 4.0
    assert "hydrogens repartitioned to 4 amu" in info(ds.path)
    # the frames' energies are the unchanged force field's (masses do not enter u)
    np.testing.assert_allclose(ds.energies.numpy(), openmm_reduced(molecule, ds.positions.numpy()),
                               atol=1e-2)
    with pytest.raises(BoltzflowError, match=r"hydrogen_mass_amu: 4.0 there vs 3.0 now"):
        simulate(molecule, tmp_path / "hmr", hydrogen_mass_amu=3.0, **kw)
    with pytest.raises(BoltzflowError, match=r"hydrogen_mass_amu: 4.0 there vs None now"):
        simulate(molecule, tmp_path / "hmr", **kw)
