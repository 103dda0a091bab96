"""The transferable Boltzmann generator: encoding, the padded conditioned EGNN (masks,
equivariance), per-molecule equivariant OT, training/resume, zero-shot sampling through the
CLI, validity with the mirror fix, and evaluation over a split — on a tiny dipeptide set."""

from __future__ import annotations

import json
import math

import pytest
import torch
from cli_util import one_and_two_ranks
from cli_util import run_main as _run

from boltzflow import runs, systems
from boltzflow.analysis.evaluate import evaluate_samples
from boltzflow.analysis.split import format_table
from boltzflow.continuous import PeptideEGNN
from boltzflow.errors import BoltzflowError, ConfigError
from boltzflow.geometry import center
from boltzflow.models import config_with, parse_config
from boltzflow.models.tbg import flow_matching_batch_loss, load_peptides
from boltzflow.sampling import Samples
from boltzflow.systems.encoding import PeptideContext, Vocabulary, encode_topology
from boltzflow.testing import assert_equivariant
from boltzflow.training import (
    GroupSlots,
    align_molecule,
    load_checkpoint,
    molecule_ot,
    transport_cost,
)

#: A tiny transferable model: 2 peptides × 4 frames per step.
TINY = {
    "model": "tbg",
    "train": {"batch_size": 8, "warmup": 0, "checkpoint_every": 5},
    "sample": {"batch_size": 16},
    "tbg": {"hidden": 16, "n_layers": 2, "frames_per_peptide": 4, "solver_steps": 4},
}


def tiny(dataset, **changes) -> runs.RunConfig:
    """The tiny config on ``dataset`` with ``{"section.key": value}`` changes."""
    return config_with(TINY, {"system.dataset": str(dataset), **changes})


def train_tiny(dataset, out, **changes) -> runs.Run:
    return runs.train(tiny(dataset, **changes), out, progress=False)


@pytest.fixture(scope="module")
def dataset(tiny_dipeptides):
    """AA, GS, PA (train split) and AC (test split): the session's tiny dipeptide set."""
    return tiny_dipeptides


@pytest.fixture(scope="module")
def encodings():
    return {s: encode_topology(systems.get(f"dipeptide:{s}").topology, label=s)
            for s in ("AC", "KI")}


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("tbg")
    train_tiny(dataset, out, **{"train.steps": 10})
    return out, runs.load_run(out)




# ------------------------------------------------------------------------------------------
# encoding


def test_equal_encodings_are_exactly_the_hydrogens_on_one_heavy_atom(encodings):
    top = systems.get("dipeptide:KI").topology
    enc = encodings["KI"]
    atoms = list(top.atoms)
    heavy = {}
    for a, b in top.bonds:
        for h, o in ((a, b), (b, a)):
            if h.element.symbol == "H":
                heavy[h.index] = o.index
    for i in range(enc.n_atoms):
        for j in range(i + 1, enc.n_atoms):
            same_encoding = bool((enc.tokens[i] == enc.tokens[j]).all())
            equivalent = i in heavy and heavy.get(j) == heavy[i]
            assert same_encoding == equivalent, (atoms[i], atoms[j])
            assert (enc.groups[i] == enc.groups[j]) == equivalent
    # chain position and termini: Lys is residue 0 (N-terminal), Ile residue 1 (C-terminal)
    vocab = Vocabulary()
    ca = [a.index for a in atoms if a.name == "CA"]
    assert enc.tokens[ca, 3].tolist() == [0, 1] and enc.tokens[ca, 4].tolist() == [1, 2]
    assert [vocab.residues[r] for r in enc.tokens[ca, 2]] == ["LYS", "ILE"]
    hz = [a.index for a in atoms if a.name.startswith("HZ")]
    assert {vocab.atoms[int(enc.tokens[i, 1])] for i in hz} == {"H@NZ"}
    # covalent-graph distances: N-CA bonded, N-C 1-3, N-O 1-4, symmetric, 0 on the diagonal
    name = {(a.residue.index, a.name): a.index for a in atoms}
    n, c_alpha = name[(0, "N")], name[(0, "CA")]
    assert enc.hops[n, c_alpha] == 1 and enc.hops[n, name[(0, "C")]] == 2
    assert enc.hops[n, name[(0, "O")]] == 3 and enc.hops[n, name[(1, "CD1")]] == 4
    assert torch.equal(enc.hops, enc.hops.T) and (enc.hops.diagonal() == 0).all()


def test_the_ramachandran_pair_of_an_uncapped_dipeptide_is_psi_1_and_phi_2():
    from boltzflow.analysis.dihedrals import (
        backbone_dihedral_indices,
        dihedral_angles,
        ramachandran_angles,
    )

    for seq in ("KI", "GP"):
        system = systems.get(f"dipeptide:{seq}")
        idx = {(a.residue.index, a.name): a.index for a in system.topology.atoms}
        quads = backbone_dihedral_indices(system.topology)
        psi_1 = [idx[(0, "N")], idx[(0, "CA")], idx[(0, "C")], idx[(1, "N")]]
        phi_2 = [idx[(0, "C")], idx[(1, "N")], idx[(1, "CA")], idx[(1, "C")]]
        assert quads["psi"].tolist() == [psi_1] and quads["phi"].tolist() == [phi_2]
        x = torch.as_tensor(system.positions)[None]
        phi, psi = ramachandran_angles(system, x)
        assert torch.allclose(phi, dihedral_angles(x, torch.tensor([phi_2]))[:, 0])
        assert torch.allclose(psi, dihedral_angles(x, torch.tensor([psi_1]))[:, 0])


def test_unknown_tokens_raise_a_clear_error():
    aldp = systems.get("aldp-implicit")  # ACE/NME caps are not in the vocabulary
    with pytest.raises(BoltzflowError, match="residue 'ACE' .* not in the transferable model's"):
        encode_topology(aldp.topology, Vocabulary(max_residues=3))
    with pytest.raises(BoltzflowError, match="3 residues; .* chain positions up to 2"):
        encode_topology(aldp.topology)
    with pytest.raises(BoltzflowError, match="chain positions up to 1"):
        encode_topology(systems.get("dipeptide:AC").topology, Vocabulary(max_residues=1))


def test_config_is_validated():
    with pytest.raises(ConfigError, match="'tbg.hidden' must be > 0"):
        parse_config({"model": "tbg", "tbg": {"hidden": 0}})
    with pytest.raises(ConfigError, match="did you mean 'n_layers'"):
        parse_config({"model": "tbg", "tbg": {"n_layer": 3}})
    with pytest.raises(ConfigError, match="'tbg.solver'"):
        parse_config({"model": "tbg", "tbg": {"solver": "euler"}})
    with pytest.raises(ConfigError, match="'tbg.quadrature_power' must be >= 1"):
        parse_config({"model": "tbg", "tbg": {"quadrature_power": 0.5}})
    with pytest.raises(ConfigError, match="multiple of tbg.frames_per_peptide"):
        parse_config({"model": "tbg", "train": {"batch_size": 10}})
    # the transferable kind's own defaults for shared keys
    cfg = parse_config({"model": "tbg"})
    assert (cfg.train.lr, cfg.train.batch_size, cfg.sample.batch_size) == (5e-3, 128, 50)
    # version-1 TBGConfig names map onto the sections
    from boltzflow.models.tbg import upgrade_tbg_config

    old = {"rk4_steps": 24, "bf16": True, "minibatch_ot": False, "peptides_per_batch": 4,
           "frames_per_peptide": 2, "sample_batch": 7, "max_frames": 100, "hidden": 8}
    cfg = parse_config(upgrade_tbg_config(old, "data/dp"))
    assert (cfg.params.solver_steps, cfg.params.amp, cfg.params.pairing) == (24, "bf16", "aligned")
    assert (cfg.train.batch_size, cfg.sample.batch_size, cfg.system.max_frames) == (8, 7, 100)
    assert cfg.system.dataset == "data/dp" and cfg.params.hidden == 8


def test_dataset_encodings_equal_the_force_field_topology_encodings(dataset):
    # topology.pdb of an N-terminal proline lacks its H2/H3 bonds: the loader must notice
    for p in load_peptides(dataset, None):
        ref = encode_topology(systems.get(p.system_id).topology)
        assert torch.equal(p.encoding.tokens, ref.tokens), p.sequence
        assert torch.equal(p.encoding.groups, ref.groups), p.sequence
        assert p.frames.shape[1] == ref.n_atoms
        assert p.frames.mean(1).abs().max() < 1e-5  # centred


# ------------------------------------------------------------------------------------------
# the conditioned field


@pytest.mark.parametrize(
    "options", [{}, {"n_rbf": 8, "bond_graph": True}, {"n_rbf": 8, "bond_graph": True, "chiral": True}]
)
def test_padding_never_changes_real_atoms(encodings, options):
    a, b = encodings["AC"], encodings["KI"]
    assert a.n_atoms < b.n_atoms
    field = PeptideEGNN(hidden=16, n_layers=2, **options)
    xa, xb = torch.randn(2, a.n_atoms, 3), torch.randn(3, b.n_atoms, 3)
    t = torch.rand(5)
    x = torch.zeros(5, b.n_atoms, 3)
    x[:2, : a.n_atoms], x[2:] = xa, xb
    x[:2, a.n_atoms :] = 100 * torch.randn(2, b.n_atoms - a.n_atoms, 3)  # garbage on padding
    ctx = PeptideContext.pad([a, a, b, b, b])
    with torch.no_grad():
        v = field(t, x, ctx)
        alone_a = field(t[:2], xa, a.context())
        alone_b = field(t[2:], xb, b.context())
        other = x.clone()
        other[:2, a.n_atoms :] = -7.0
        v_other = field(t, other, ctx)
    assert (v[:2, : a.n_atoms] - alone_a).abs().max() < 1e-5
    assert (v[2:] - alone_b).abs().max() < 1e-5
    assert (v[:2, a.n_atoms :] == 0).all()  # padded outputs exactly 0
    assert torch.equal(v, v_other)  # padding positions never matter
    assert v[:2].sum(1).abs().max() < 1e-5  # mean-free over the real atoms
    # the encoding matters: AC's atoms with KI's first tokens give another velocity
    swapped = PeptideContext(b.tokens[: a.n_atoms], a.groups, hops=a.hops)
    with torch.no_grad():
        assert (field(t[:2], xa, swapped) - alone_a).abs().max() > 1e-3


@pytest.mark.parametrize("options", [{}, {"n_rbf": 8, "bond_graph": True}])
def test_field_is_equivariant_alone_and_in_a_padded_batch(encodings, options):
    a, b = encodings["AC"], encodings["KI"]
    field = PeptideEGNN(hidden=16, n_layers=2, **options).double()
    xa = torch.randn(3, a.n_atoms, 3, dtype=torch.float64)
    assert_equivariant(field, xa, torch.rand(3, dtype=torch.float64), a.context())
    # padded batch: rotations, reflections, translations through the library check …
    ctx = PeptideContext.pad([a, b, b])
    x = torch.randn(3, b.n_atoms, 3, dtype=torch.float64)
    t = torch.rand(3, dtype=torch.float64)
    assert_equivariant(field, x, t, ctx, permutations=False)
    # … and a permutation within each molecule's own groups, row by row
    gen = torch.Generator().manual_seed(1)
    perm = torch.arange(b.n_atoms).repeat(3, 1)
    for row in range(3):
        groups = ctx.groups[row]
        for g in torch.unique(groups[groups >= 0]):
            idx = torch.nonzero(groups == g).flatten()
            perm[row, idx] = idx[torch.randperm(len(idx), generator=gen)]
    assert (perm != torch.arange(b.n_atoms)).any()
    with torch.no_grad():
        v = field(t, x, ctx)
        v_perm = field(t, torch.gather(x, 1, perm[..., None].expand_as(x)), ctx)
    assert (v_perm - torch.gather(v, 1, perm[..., None].expand_as(v))).abs().max() < 1e-10


def test_chiral_field_commutes_with_rotations_but_tells_mirror_images_apart(encodings):
    a, b = encodings["AC"], encodings["KI"]
    field = PeptideEGNN(hidden=16, n_layers=2, n_rbf=8, bond_graph=True, chiral=True).double()
    xa = torch.randn(3, a.n_atoms, 3, dtype=torch.float64)
    t = torch.rand(3, dtype=torch.float64)
    assert_equivariant(field, xa, t, a.context(), reflections=False)
    ctx = PeptideContext.pad([a, b, b])
    x = torch.randn(3, b.n_atoms, 3, dtype=torch.float64)
    assert_equivariant(field, x, t, ctx, reflections=False, permutations=False)
    with pytest.raises(AssertionError):  # a reflection is not a symmetry of a chiral field
        assert_equivariant(field, xa, t, a.context(), rotations=False, translations=False,
                           permutations=False)
    # the mirror term is what breaks it: v(-x) = -v(x) only without the cross product
    with torch.no_grad():
        v, v_mirror = field(t, xa, a.context()), field(t, -xa, a.context())
        assert (v_mirror + v).abs().max() > 1e-3
        for layer in field.layers:
            layer.chiral.weight.zero_()
            layer.chiral.bias.zero_()
        v, v_mirror = field(t, xa, a.context()), field(t, -xa, a.context())
        assert (v_mirror + v).abs().max() < 1e-10


# ------------------------------------------------------------------------------------------
# pairing


def test_align_molecule_undoes_a_group_permutation_and_a_rotation(encodings):
    enc = encodings["KI"]
    slots = GroupSlots.from_groups(enc.groups)
    assert set(slots.by_size) == {2, 3}
    x1 = center(torch.randn(4, enc.n_atoms, 3, dtype=torch.float64))
    perm = torch.arange(enc.n_atoms)
    for idx in slots.by_size[3]:
        perm[idx] = idx[[2, 0, 1]]
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))
    q = q * torch.sign(torch.linalg.det(q))  # proper rotation
    x0 = x1[:, perm] @ q
    assert (align_molecule(x0, x1, slots) - x1).abs().max() < 1e-10


def test_per_molecule_equivariant_ot_lowers_the_transport_cost(dataset):
    peptides = {p.sequence: p for p in load_peptides(dataset, "train")}
    p = peptides["AA"]
    x1 = p.frames[:16] / 0.16
    x0 = center(torch.randn_like(x1))
    paired = molecule_ot(x0, x1, p.slots)
    aligned_only = molecule_ot(x0, x1, p.slots, minibatch=False)
    independent = transport_cost(x0, x1).mean()
    assert transport_cost(aligned_only, x1).mean() < independent
    assert transport_cost(paired, x1).mean() <= transport_cost(aligned_only, x1).mean() + 1e-6
    assert transport_cost(paired, x1).mean() < 0.8 * independent
    # the prior samples are only permuted within groups and rotated: same pairwise distances
    d_before = torch.sort(torch.pdist(x0[0]))[0]
    d_after = [torch.sort(torch.pdist(y))[0] for y in paired]
    assert any((d - d_before).abs().max() < 1e-4 for d in d_after)


# ------------------------------------------------------------------------------------------
# training


def test_training_lowers_the_loss_and_resume_equals_an_uninterrupted_run(dataset, tmp_path):
    constant = {"train.lr_schedule": "constant", "train.lr": 3e-3}
    train_tiny(dataset, tmp_path / "full", **constant, **{"train.steps": 6})
    train_tiny(dataset, tmp_path / "resumed", **constant, **{"train.steps": 3})
    assert load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")["step"] == 3
    # a run directory written by version 1 (tbg_config.json, flat TBGConfig keys) resumes
    resumed = tmp_path / "resumed"
    old = {"hidden": 16, "n_layers": 2, "peptides_per_batch": 2, "frames_per_peptide": 4,
           "warmup": 0, "rk4_steps": 4, "sample_batch": 16, "checkpoint_every": 5, "steps": 3,
           "lr_schedule": "constant", "lr": 3e-3}
    (resumed / "tbg_config.json").write_text(json.dumps(
        {"config": old, "dataset": str(dataset)}))
    (resumed / "config.yaml").unlink()
    assert runs.read_run_config(resumed).params.hidden == 16
    train_tiny(dataset, resumed, **constant, **{"train.steps": 6})
    full = load_checkpoint(tmp_path / "full" / "checkpoint.pt")
    again = load_checkpoint(resumed / "checkpoint.pt")
    assert again["step"] == 6 and full["metadata"]["kind"] == "tbg"
    for k, v in full["model"].items():
        assert torch.equal(v, again["model"][k]), k
    assert full["metadata"]["vocabulary"] == Vocabulary().to_dict()
    assert set(full["metadata"]["train_sequences"]) == {"AA", "GS", "PA"}  # AC is held out
    # a run directory refuses another configuration
    with pytest.raises(BoltzflowError, match="different configuration"):
        train_tiny(dataset, tmp_path / "full", **constant, **{"train.steps": 6, "tbg.hidden": 8})
    # more steps lower a fixed validation loss
    train_tiny(dataset, tmp_path / "long", **{"train.lr": 3e-3, "train.steps": 40})
    lines = (tmp_path / "long" / "train_log.csv").read_text().splitlines()
    assert lines[0].startswith("step,loss,epoch")
    losses = [float(r.split(",")[1]) for r in lines[1:]]
    assert all(math.isfinite(x) for x in losses)
    long, before = runs.load_run(tmp_path / "long"), runs.load_run(tmp_path / "full")
    assert _validation_loss(long.model, dataset) < _validation_loss(before.model, dataset)


def test_checkpoint_restores_the_field_with_its_options(dataset, tmp_path):
    run = train_tiny(dataset, tmp_path, **{"train.steps": 2, "tbg.n_rbf": 8,
                                           "tbg.bond_graph": True, "tbg.chiral": True})
    loaded = runs.load_run(tmp_path).model
    field = loaded.module
    assert field.bond_graph and field.n_rbf == 8 and field.chiral
    assert loaded.scale == run.model.scale and loaded.info["step"] == 2
    enc = encode_topology(systems.get("dipeptide:AC").topology)
    x, t = torch.randn(3, enc.n_atoms, 3), torch.rand(3)
    with torch.no_grad():
        assert torch.equal(field(t, x, enc.context()), run.model.module(t, x, enc.context()))
    # a chiral model's samples get no mirror fix, and its report says so
    ac = systems.get("dipeptide:AC")
    loaded_run = runs.load_run(tmp_path)
    runs.sample(loaded_run, 4, system=ac, progress=False)
    metrics = runs.evaluate(loaded_run, system=ac)
    assert "n_mirrored" not in metrics
    report = (tmp_path / "systems" / "dipeptide-AC" / "report.md").read_text()
    assert "no mirror fix applies" in report
    # 4 samples can hold at most 4 effective ones: the report warns about the reweighted numbers
    assert metrics["ess_samples"] == pytest.approx(4 * metrics["ess"])
    assert "**Few effective samples" in report
    # a checkpoint of another kind is refused with one line
    from boltzflow.training import save_checkpoint

    save_checkpoint(tmp_path / "checkpoint.pt", {"model": {}, "metadata": {"kind": "cnf"}})
    with pytest.raises(BoltzflowError, match="is a 'cnf' model"):
        runs.load_run(tmp_path)


def _validation_loss(model, dataset) -> float:
    from boltzflow.training import LinearPath

    gen = torch.Generator().manual_seed(5)
    mols = []
    for p in load_peptides(dataset, "train"):
        x1 = p.frames[:16] / model.scale
        mols.append((p, center(torch.randn(x1.shape, generator=gen)), x1,
                     torch.rand(16, generator=gen)))
    n = sum(m[2].shape[0] * m[2].shape[1] for m in mols)
    with torch.no_grad():
        loss = flow_matching_batch_loss(
            model.module, mols, path=LinearPath(0.0), seeds=list(range(len(mols))),
            normalizer=n, device=torch.device("cpu"),
        )
    return float(loss)


# ------------------------------------------------------------------------------------------
# sampling and evaluation


def test_cli_trains_and_samples_an_unseen_dipeptide_with_consistent_log_q(
    dataset, tmp_path, capsys
):
    import yaml

    (tmp_path / "tbg.yaml").write_text(yaml.safe_dump(TINY))
    run = tmp_path / "run"
    code, out, err = _run(capsys, "train", "--model", "tbg", "--dataset", str(dataset), "--config",
                          str(tmp_path / "tbg.yaml"), "--steps", "16", "--out", str(run),
                          "--no-progress")
    assert code == 0, err
    assert "trained a tbg model" in out and (run / "checkpoint.pt").exists()
    lines = (run / "train_log.csv").read_text().splitlines()
    assert float(lines[-1].split(",")[2]) > 1.0  # the epoch column: 16 steps pass the data once
    # --checkpoint is still accepted for --run
    code, out, err = _run(capsys, "sample", "--checkpoint", str(run / "checkpoint.pt"), "--system",
                          "dipeptide:AC", "-n", "12", "--device", "cpu", "--no-progress")
    assert code == 0, err
    samples_dir = run / "systems" / "dipeptide-AC"
    assert f"12 samples → {samples_dir / 'samples.npz'}" in out
    code, out, err = _run(capsys, "evaluate", "--run", str(run), "--system", "dipeptide:AC",
                          "--no-progress")
    assert code == 0, err
    metrics = json.loads((samples_dir / "metrics.json").read_text())
    assert metrics["n_samples"] == 12 and 0 <= metrics["fraction_valid"] <= 1
    assert metrics.get("dF_phi_md") is not None or "energy_w2_model" in metrics or \
        metrics["fraction_valid"] == 0  # compared with the dataset's MD of AC where valid
    assert "Mirror fix" in (samples_dir / "report.md").read_text()
    samples = Samples.load(samples_dir / "samples.npz", system_id="dipeptide:AC")
    assert samples.x.shape == (12, 24, 3) and torch.isfinite(samples.log_q).all()
    # log q of the samples evaluated in the other direction (data -> prior) agrees
    ac = systems.get("dipeptide:AC")
    model = runs.load_run(run).model
    flow = model.flow_for(ac)
    with torch.no_grad():
        log_q = flow.log_prob(samples.x)
        mirrored = flow.log_prob(-samples.x)
    assert (log_q - samples.log_q).abs().max() < 0.05
    assert (mirrored - log_q).abs().max() < 1e-3  # reflection-invariant: the mirror fix is exact
    # the Gauss–Legendre log-det (the default integrator) agrees with RK4 × 10 with the
    # divergence at every stage
    assert model.params.solver == "gauss-legendre"
    rk4 = runs.load_run(run, changes={"tbg.solver": "rk4", "tbg.solver_steps": 10}).model
    with torch.no_grad():
        assert (rk4.flow_for(ac).log_prob(samples.x[:4]) - log_q[:4]).abs().max() < 0.05
    # so does the grid crowded toward t = 1, sampling and evaluating (CLI override)
    warp = ("--quadrature-power", "2", "--solver-steps", "16", "--no-progress")
    code, out, err = _run(capsys, "sample", "--run", str(run), "--system", "dipeptide:AC",
                          "-n", "4", "--seed", "3", *warp)
    assert code == 0, err
    code, out, err = _run(capsys, "evaluate", "--run", str(run), "--system", "dipeptide:AC",
                          *warp)
    assert code == 0, err
    assert "t = 1 − (1 − s)^2" in (samples_dir / "report.md").read_text()
    warped = runs.load_run(run, changes={"tbg.quadrature_power": 2.0, "tbg.solver_steps": 16})
    fine = runs.load_run(run, changes={"tbg.quadrature_power": 2.0, "tbg.quadrature_nodes": 16,
                                       "tbg.solver_steps": 32})
    ref = runs.load_run(run, changes={"tbg.solver": "rk4", "tbg.solver_steps": 40})
    w = Samples.load(samples_dir / "samples.npz", system_id="dipeptide:AC")
    with torch.no_grad():
        back = warped.model.flow_for(ac).log_prob(w.x)  # the same integrator, other direction
        fine_q = fine.model.flow_for(ac).log_prob(w.x)
        ref_q = ref.model.flow_for(ac).log_prob(w.x)
    assert (back - w.log_q).abs().max() < 0.05 and (fine_q - ref_q).abs().max() < 0.02
    # user mistakes are one clean line
    code, _, err = _run(capsys, "sample", "--run", str(run), "-n", "2")
    assert code == 2 and "--system" in err
    code, _, err = _run(capsys, "train", "--model", "tbg", "--out", str(tmp_path / "x"))
    assert code == 2 and "--dataset" in err
    code, _, err = _run(capsys, "sample", "--run", str(run), "--system", "aldp-implicit",
                        "-n", "2")
    assert code == 2 and "3 residues" in err


def test_validity_catches_mirrored_and_wrongly_bonded_samples(dataset, trained, tmp_path):
    system = systems.get("dipeptide:AC")
    md = load_peptides(dataset, "test")[0].frames[:6].to(torch.float64)
    x = md.clone()
    x[1] = -x[1]  # the mirror image (D-form): fixed by reflection
    top = system.topology
    h = next(a.index for a in top.atoms if a.name == "HA")
    x[2, h] += torch.tensor([0.3, 0.0, 0.0], dtype=torch.float64)  # Hα torn off its Cα
    cb = next(a.index for a in top.atoms if a.name == "CB" and a.residue.index == 0)
    ca = next(a.index for a in top.atoms if a.name == "CA" and a.residue.index == 0)
    x[3, cb] = 2 * x[3, ca] - x[3, cb]  # Cβ flipped through Cα: one D centre only, not fixable
    u = system.energy.to(torch.float64).energy(x)
    samples = Samples.from_model(x, torch.zeros(6, dtype=torch.float64), u)
    model = runs.load_run(trained[0]).model  # an E(3) field: mirror-symmetric density
    result = evaluate_samples(model, system, samples, tmp_path / "e3", reference=md, plots=False)
    m = result.metrics
    assert m["n_mirrored"] == 1
    assert m["n_invalid_bonds"] >= 1 and m["n_invalid_chirality"] >= 1
    assert m["fraction_valid"] == pytest.approx(4 / 6)
    log_w = result.samples.log_w
    assert torch.isinf(log_w[2]) and torch.isinf(log_w[3]) and torch.isfinite(log_w[[0, 1, 4, 5]]).all()
    assert torch.allclose(result.samples.x[1], md[1])  # mirrored back onto the MD frame
    for key in ("energy_w2_model", "energy_w2_reweighted", "torus_w2_model", "torus_w2_reweighted"):
        assert math.isfinite(m[key]), key  # the valid samples are compared with MD
    # a chiral model's density is not mirror-symmetric: no fix, the D sample is invalid
    model.mirror_symmetric = lambda: False
    chiral = evaluate_samples(model, system, samples, tmp_path / "se3", reference=md,
                              plots=False).metrics
    assert "n_mirrored" not in chiral and chiral["fraction_valid"] == pytest.approx(3 / 6)


def test_evaluation_table_counts_effective_samples_and_flags_the_few():
    rows = {
        "AC": {"n_samples": 100, "ess": 0.5, "ess_samples": 50.0, "log_w_spread": 0.83},
        "NY": {"n_samples": 100, "ess": 0.01, "ess_samples": 1.0, "log_w_spread": 7.2},
        "KI": {"n_samples": 200, "ess": 0.04},  # written before ess_samples existed: 8 samples
    }
    table = format_table(rows, {"ess": 0.18, "ess_samples": 25.5})
    assert "| AC | 100 | 50.00% | 50.0 | 0.83 |" in table
    assert "| NY | 100 | 1.00% | 1.0 | 7.20 |" in table and "| KI | 200 | 4.00% | – | – |" in table
    assert "| **mean** | | 18.00% | 25.5 |" in table
    assert "for 2 of 3 peptides (NY, KI)" in table
    assert "Fewer than" not in format_table({"AC": rows["AC"]}, {})


def test_evaluate_over_the_test_split_writes_table_json_and_grid(dataset, trained, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained[0], run)
    result = runs.evaluate_split(runs.load_run(run), "test", n_samples=8)
    assert list(result.rows) == ["AC"] and result.grid.exists() and result.grid.stat().st_size > 0
    assert result.table == run / "eval-test" / "evaluation.md"
    text = result.table.read_text()
    assert "| AC | 8 |" in text and "**mean**" in text and "ramachandran_grid.png" in text
    payload = json.loads(result.json.read_text())
    assert payload["peptides"]["AC"]["seen_in_training"] is False
    assert set(payload["means"]) >= {"ess", "fraction_valid", "torus_w2_model", "dF_phi_error",
                                     "log_w_spread"}
    assert "σ log w" in text and "log_w_spread" in result.rows["AC"]
    # rerunning reuses the per-peptide samples; the CLI writes the same files
    before = Samples.load(run / "eval-test" / "AC" / "samples.npz").x
    code, out, err = _run(capsys, "evaluate", "--run", str(run), "--split", "test", "-n", "8",
                          "--no-progress")
    assert code == 0, err
    assert "| AC | 8 |" in out
    assert torch.equal(Samples.load(run / "eval-test" / "AC" / "samples.npz").x, before)
    # an unknown split is one line
    code, _, err = _run(capsys, "evaluate", "--run", str(run), "--split", "nope")
    assert code == 2 and "--split must be" in err


def test_two_torchrun_ranks_equal_one_process(dataset, tmp_path):
    cfg = {**TINY, "train": {**TINY["train"], "lr_schedule": "constant", "lr": 3e-3}}
    one, two = one_and_two_ranks(tmp_path, "tbg", dataset, cfg, 6)
    assert max(float((one[k] - two[k]).abs().max()) for k in one) < 1e-5
