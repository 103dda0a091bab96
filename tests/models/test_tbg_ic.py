"""The transferable internal-coordinate flow (``tbg-ic``): the peptide Z-matrix, padding
invariance, exact log-determinants against autograd, zero-shot sampling of an unseen dipeptide,
a capped dipeptide and a tripeptide through the CLI, unseen chemistry, and two torchrun ranks."""

from __future__ import annotations

import json
import math

import pytest
import torch
from cli_util import one_and_two_ranks, run_main

from boltzflow import runs, systems
from boltzflow.errors import BoltzflowError
from boltzflow.models import parse_config
from boltzflow.models.tbg_ic import (
    MoleculeFlow,
    RowContext,
    RowFlow,
    TBGICParams,
    describe_molecule,
    ic_vocabulary,
    log_prior,
    peptide_zmatrix,
)
from boltzflow.training import load_checkpoint

#: A tiny model: 2 peptides × 4 frames per step, 4 layers of width 16.
TINY = {
    "model": "tbg-ic",
    "train": {"batch_size": 8, "warmup": 0, "checkpoint_every": 5, "lr": 3e-3},
    "tbg-ic": {"hidden": 16, "n_layers": 4, "attention_layers": 1, "heads": 2,
               "frames_per_peptide": 4},
}


def _molecule(system_id: str):
    return describe_molecule(systems.get(system_id).topology, ic_vocabulary(), system_id)


def _random_flow(seed: int = 0, torsion_codes: bool = True) -> RowFlow:
    """A flow whose spline heads are not zero (a fresh one is the identity); eight layers, so
    the torsion layers use both bits of the codes."""
    torch.manual_seed(seed)
    flow = RowFlow(TBGICParams(hidden=16, n_layers=8, attention_layers=1, heads=2),
                   ic_vocabulary(), torsion_codes).double()
    with torch.no_grad():
        for layer in flow.layers:
            layer.head.weight.normal_(0, 0.05)
            layer.head.bias.normal_(0, 0.3)
    return flow


def test_peptide_zmatrix_runs_along_the_main_chain_and_matches_across_peptides():
    for sid in ("dipeptide:KI", "dipeptide:AC", "aldp-implicit"):
        top = systems.get(sid).topology
        zm = peptide_zmatrix(top)
        names = [f"{a.residue.index}:{a.name}" for a in top.atoms]
        frame = [names[int(a)] for a in zm.frame]
        # the frame sits on the main chain (a long side chain such as Lys's never hijacks it)
        assert all(n.split(":")[1] in ("N", "CA", "C", "CH3") for n in frame), (sid, frame)
    # the same group gets the same references in two peptides: Ala's Cβ hydrogens
    rows = {}
    for sid in ("dipeptide:AC", "dipeptide:AK"):
        top = systems.get(sid).topology
        atoms = list(top.atoms)
        zm = peptide_zmatrix(top)
        rows[sid] = sorted(
            tuple(atoms[int(a)].name for a in row) for row in zm.internal.tolist()
            if atoms[row[0]].residue.index == 0 and atoms[row[0]].name.startswith("HB"))
    assert rows["dipeptide:AC"] == rows["dipeptide:AK"] and len(rows["dipeptide:AC"]) == 3


def test_torsion_codes_let_neighbouring_backbone_torsions_condition_on_each_other():
    """By row parity a dipeptide's ψ₁, φ₂ and ψ₂ never saw each other; with the codes every
    two free torsions whose axes share an atom meet in some torsion layer, φ₂ and ψ₂ too."""
    mol = _molecule("dipeptide:AC")
    top = systems.get("dipeptide:AC").topology
    atoms = list(top.atoms)
    rows = mol.ic.zmatrix.rows
    free = torch.nonzero(mol.circular[:, 2])[:, 0].tolist()
    axis = {r: frozenset(int(a) for a in rows[r, 1:3]) for r in free}
    named = {r: (atoms[min(axis[r])].residue.index,
                 frozenset(atoms[a].name for a in axis[r])) for r in free}
    phi2 = next(r for r in free if named[r] == (1, frozenset(("N", "CA"))))
    psi2 = next(r for r in free if named[r] == (1, frozenset(("CA", "C"))))
    psi1 = next(r for r in free if named[r] == (0, frozenset(("CA", "C"))))
    ctx = RowContext.pad([mol])

    def moving(flow, layer, r):  # is row r's torsion transformed in this layer
        return bool(flow._mask(layer, ctx)[0, r, 2])

    for torsion_codes in (False, True):
        flow = _random_flow(torsion_codes=torsion_codes)
        torsion_layers = [i for i in range(8) if flow._mask(i, ctx)[..., 2].any()]
        for a, b in ((psi1, phi2), (phi2, psi2), (psi1, psi2)):
            met = any(moving(flow, i, a) != moving(flow, i, b) for i in torsion_layers)
            if torsion_codes and axis[a] & axis[b]:
                assert met, (named[a], named[b])
            if not torsion_codes:
                assert not met  # what the codes fix
        # every torsion moves in some layer, once per bit
        assert all(sum(moving(flow, i, r) for i in torsion_layers) == 2 for r in free)
    assert int(mol.codes[phi2]) % 2 != int(mol.codes[psi2]) % 2


def test_padding_never_changes_real_rows():
    flow = _random_flow()
    small, big = _molecule("dipeptide:GA"), _molecule("dipeptide:KI")
    assert small.n_rows < big.n_rows
    alone = RowContext.pad([small])
    both = RowContext.pad([small, big])
    z = torch.randn(1, small.n_rows, 3, dtype=torch.float64)
    padded = torch.randn(2, big.n_rows, 3, dtype=torch.float64)  # garbage in the padding
    padded[0, : small.n_rows] = z[0]
    with torch.no_grad():
        y1, ld1 = flow.forward(z, alone)
        y2, ld2 = flow.forward(padded, both)
        torch.testing.assert_close(y2[0, : small.n_rows], y1[0])
        torch.testing.assert_close(ld2[0], ld1[0])
        torch.testing.assert_close(log_prior(padded, both)[0], log_prior(z, alone)[0])


def test_one_molecule_context_broadcasts_and_tokens_sum_all_tables():
    """A molecule's flow keeps its context as a batch of one (the token embeddings and the
    attention bias are computed once for all samples): the same values as the context
    stacked per sample, and the one summed lookup equals the 20 tables' lookups added."""
    flow = _random_flow(3)
    with torch.no_grad():
        for layer in flow.layers:
            for slot in layer.tokens.tables:
                for table in slot:
                    table.weight.normal_()
    mol, other = _molecule("dipeptide:GA"), _molecule("dipeptide:PA")
    one = RowContext.pad([mol])
    z = torch.randn(5, mol.n_rows, 3, dtype=torch.float64)
    with torch.no_grad():
        y1, ld1 = flow.forward(z, one)
        y2, ld2 = flow.forward(z, RowContext.pad([mol] * 5))
        torch.testing.assert_close(y1, y2)
        torch.testing.assert_close(ld1, ld2)
        bij = MoleculeFlow(flow, mol)
        flat, ld3 = bij.forward(mol.flat(z))
        torch.testing.assert_close(flat, mol.flat(y2))
        torch.testing.assert_close(ld3, ld2)

        tokens = RowContext.pad([mol, other]).tokens
        embed = flow.layers[0].tokens
        expected = sum(table(torch.where(tokens[..., slot, f] < 0, table.num_embeddings - 1,
                                         tokens[..., slot, f]))
                       for slot, tables in enumerate(embed.tables)
                       for f, table in enumerate(tables))
        torch.testing.assert_close(embed(tokens), expected)
        assert (tokens < 0).any() and expected.abs().mean() > 1  # padding and real tokens


def test_round_trip_and_log_det_against_autograd():
    flow = _random_flow(1)
    mol = _molecule("dipeptide:GA")
    bij = MoleculeFlow(flow, mol)
    gen = torch.Generator().manual_seed(2)
    z = torch.randn(3, mol.ic.dim, dtype=torch.float64, generator=gen)
    circ = mol.flat(mol.circular[None].float())[0].bool()
    z[:, circ] = (torch.rand(3, int(circ.sum()), dtype=torch.float64, generator=gen) - 0.5) * 6
    y, logdet = bij.forward(z)
    back, inv_logdet = bij.inverse(y)
    torch.testing.assert_close(back, z, atol=1e-8, rtol=0)
    torch.testing.assert_close(inv_logdet, -logdet, atol=1e-8, rtol=0)
    for i in range(len(z)):
        jac = torch.autograd.functional.jacobian(lambda v: bij.forward(v[None])[0][0], z[i])
        torch.testing.assert_close(logdet[i], torch.linalg.slogdet(jac)[1], atol=1e-8, rtol=0)
    assert logdet.abs().min() > 0.1  # the check is not against an identity map


def test_unseen_chemistry_is_one_line_naming_the_atom():
    top = systems.get("dipeptide:AC").topology.copy()
    atom = next(a for a in top.atoms if a.name == "SG")
    atom.name = "SX"
    with pytest.raises(BoltzflowError, match="SX") as err:
        describe_molecule(top, ic_vocabulary(), "odd")
    assert len(str(err.value).splitlines()) == 1
    with pytest.raises(BoltzflowError, match="chain positions up to 8"):
        describe_molecule(systems.get("peptide:AAAAAAAAA").topology, ic_vocabulary(), "9-mer")


def test_cli_trains_then_samples_unseen_capped_and_longer_peptides(tiny_dipeptides, tmp_path,
                                                                   capsys):
    import yaml

    (tmp_path / "ic.yaml").write_text(yaml.safe_dump(TINY))
    run = tmp_path / "run"
    code, out, err = run_main(capsys, "train", "--model", "tbg-ic", "--dataset",
                              str(tiny_dipeptides), "--config", str(tmp_path / "ic.yaml"),
                              "--steps", "30", "--out", str(run), "--no-progress")
    assert code == 0, err
    meta = load_checkpoint(run / "checkpoint.pt")["metadata"]
    assert meta["kind"] == "tbg-ic" and set(meta["train_sequences"]) == {"AA", "GS", "PA"}
    assert any(k.startswith("b:ALA:CA-ALA:N") or k.startswith("b:ALA:") for k in meta["stats"])
    lines = (run / "train_log.csv").read_text().splitlines()
    first, last = float(lines[1].split(",")[1]), float(lines[-1].split(",")[1])
    assert last < first  # maximum likelihood improves
    for system in ("dipeptide:AC", "peptide:ACE-ALA-ALA-NME", "peptide:AGS"):
        code, out, err = run_main(capsys, "sample", "--run", str(run), "--system", system,
                                  "-n", "64", "--no-progress")
        assert code == 0, (system, err)
        code, out, err = run_main(capsys, "evaluate", "--run", str(run), "--system", system,
                                  "--no-plots")
        assert code == 0, (system, err)
        where = run / "systems" / runs.slug(system)
        metrics = json.loads((where / "metrics.json").read_text())
        assert metrics["n_samples"] == 64 and "fraction_valid" in metrics
        assert metrics["ess_samples"] == pytest.approx(metrics["ess"] * 64)
    # log q of the samples, evaluated in the other direction, agrees (one network pass each);
    # a 30-step model of an unseen residue puts a few angles outside (0, π), where internal
    # coordinates are not a bijection, so the check is on most samples
    loaded = runs.load_run(run)
    flow = loaded.model.flow_for(systems.get("dipeptide:AC"))
    from boltzflow.sampling import Samples

    samples = Samples.load(run / "systems" / "dipeptide-AC" / "samples.npz")
    with torch.no_grad():
        agree = (flow.log_prob(samples.x.float()) - samples.log_q).abs() < 1e-2
    assert agree.float().mean() > 0.85
    # AIS refinement works for this kind (exact log q and its gradient in one pass)
    code, out, err = run_main(capsys, "sample", "--run", str(run), "--system", "dipeptide:AC",
                              "-n", "32", "--refine", "ais", "--levels", "2", "--no-progress")
    assert code == 0 and "AIS × 2 levels" in out, err
    # unseen chemistry through the CLI: one line
    code, _, err = run_main(capsys, "sample", "--run", str(run), "--system", "peptide:AAAAAAAAA",
                            "-n", "2")
    assert code == 2 and "chain positions up to 8" in err and len(err.strip().splitlines()) == 1


def test_config_checks():
    with pytest.raises(BoltzflowError, match="multiple of tbg-ic.heads"):
        parse_config({"model": "tbg-ic", "tbg-ic": {"hidden": 10, "heads": 4}})
    with pytest.raises(BoltzflowError, match="multiple of tbg-ic.frames_per_peptide"):
        parse_config({"model": "tbg-ic", "train": {"batch_size": 10}})


def test_two_torchrun_ranks_equal_one_process(tiny_dipeptides, tmp_path):
    cfg = {**TINY, "train": {**TINY["train"], "lr_schedule": "constant"}}
    one, two = one_and_two_ranks(tmp_path, "tbg-ic", tiny_dipeptides, cfg, 4)
    # float32 sums in another order, amplified by Adam's normalization over 4 steps: 1e-4
    assert max(float((one[k] - two[k]).abs().max()) for k in one) < 1e-4


def test_ring_closures_in_the_transferable_layout():
    """New models close rings (the closing bond normalized as a bond, the ring torsions rigid);
    a checkpoint without the layout keys restores without closures, as it was trained."""
    from boltzflow.models.tbg_ic import DEFAULT_STD, TBGICKind, normalization_for

    trp = systems.get("peptide:ACE-TRP-NME").topology
    new = describe_molecule(trp, ic_vocabulary(), "W")
    old = describe_molecule(trp, ic_vocabulary(), "W", ring_closures=False)
    closing = [k for k in new.keys if k[2] == "c"]
    assert len(closing) == 2 and not any(k[2] == "c" for k in old.keys)
    assert int(new.circular.sum()) < int(old.circular.sum())  # ring torsions became rigid
    # ring chemistry never seen: a closing bond takes its element pair's bond statistics
    seen = {"b": [0.12, 0.003], "a": [1.9, 0.06], "b:C-C": [0.14, 0.0021], "b:C-N": [0.138, 0.0024]}
    norm = normalization_for(new, seen)
    i = new.ic.closure_indices
    assert sorted(norm.log_scale[i].exp().tolist()) == pytest.approx([0.0021, 0.0024])
    assert sorted(norm.shift[i].tolist()) == pytest.approx([0.138, 0.14])
    assert DEFAULT_STD["c"] == DEFAULT_STD["b"]
    assert TBGICKind.layout_of({}) == {"ring_closures": False, "tail_bound": None,
                                       "hydrogen_names": False, "key_version": 1,
                                       "torsion_bound": False, "torsion_codes": False}
    assert TBGICKind.layout_of(None)["ring_closures"] is True


def test_methylene_hydrogens_get_their_own_normalization():
    """HB2 and HB3 of Asn: one pooled key (a bimodal ±120° torsion) without hydrogen names, two
    narrow ones with them."""
    top = systems.get("dipeptide:NA").topology
    names = [a.name for a in top.atoms]

    def keys(hydrogen_names: bool) -> set[str]:
        mol = describe_molecule(top, ic_vocabulary(), "NA", hydrogen_names=hydrogen_names)
        rows = mol.ic.zmatrix.rows.tolist()
        torsion_keys = mol.keys[2 * mol.n_rows - 3:]
        return {torsion_keys[r - 3][0] for r, row in enumerate(rows)
                if r >= 3 and names[row[0]] in ("HB2", "HB3") and top.atom(row[0]).residue.name == "ASN"}

    assert len(keys(False)) == 1 and len(keys(True)) == 2


def _cys_hb_torsion_keys(mol, top):
    """Exact keys of the Cys HB2/HB3 torsion rows, by atom name."""
    names = [a.name for a in top.atoms]
    rows = mol.ic.zmatrix.rows.tolist()
    torsion_keys = mol.keys[2 * mol.n_rows - 3:]
    return {names[row[0]]: torsion_keys[r - 3][0] for r, row in enumerate(rows)
            if r >= 3 and names[row[0]] in ("HB2", "HB3")
            and top.atom(row[0]).residue.name == "CYS"}


def test_prochiral_hydrogens_are_keyed_by_geometry_not_by_name():
    """Which methylene hydrogen a structure calls HB2 is arbitrary (OpenMM places them at
    random): the same Cys with HB2 and HB3 swapped must give the same normalization."""
    from boltzflow.models.tbg_ic import fit_chemistry

    system = systems.get("dipeptide:AC")
    top, x = system.topology, torch.as_tensor(system.positions, dtype=torch.float64)
    hb = {a.name: a.index for a in top.atoms if a.residue.name == "CYS"}
    swapped = x.clone()
    swapped[[hb["HB2"], hb["HB3"]]] = x[[hb["HB3"], hb["HB2"]]]
    spreads = {}
    for version in (1, 2):
        mols = [describe_molecule(top, ic_vocabulary(), "AC", key_version=version, positions=p)
                for p in (x, swapped)]
        flats = [m.ic.inverse(p[None])[0] for m, p in zip(mols, (x, swapped))]
        stats = fit_chemistry(mols, flats)
        keys = {k for m in mols for k in _cys_hb_torsion_keys(m, top).values()}
        spreads[version] = max(stats[k][1] for k in keys)
        if version == 2:  # the key follows the geometry: the two structures swap keys
            a, b = (_cys_hb_torsion_keys(m, top) for m in mols)
            assert a["HB2"] == b["HB3"] and a["HB3"] == b["HB2"] and a["HB2"] != a["HB3"]
    assert spreads[1] > 1.0  # by name: one key holds +120° and -120°
    assert spreads[2] < 1e-6


def test_relative_keys_share_the_peptide_bond_of_a_pair_never_seen():
    keys = {}
    for seq in ("AC", "AE"):
        system = systems.get(f"dipeptide:{seq}")
        mol = describe_molecule(system.topology, ic_vocabulary(), seq, key_version=2,
                                positions=system.positions)
        atoms = list(system.topology.atoms)
        rows = mol.ic.zmatrix.rows.tolist()
        keys[seq] = next(mol.keys[r - 1] for r, row in enumerate(rows)
                         if r >= 1 and atoms[row[0]].name == "N"
                         and atoms[row[0]].residue.index == 1)
    assert keys["AC"][0] != keys["AE"][0]  # exact: ALA:C-CYS:N vs ALA:C-GLU:N
    assert keys["AC"][1] == keys["AE"][1]  # relative: the peptide bond of any dipeptide
    assert keys["AC"][-2] == "b:N-C"


def _analog_samples(dataset, system_id: str, key_version: int, n: int = 200):
    """Samples of a molecule from the normalization alone (an untrained flow: each coordinate
    its chemistry's mean ± spread, free torsions uniform), statistics fitted on ``dataset``."""
    from boltzflow.distributions.torus import ProductBase
    from boltzflow.flow import Flow
    from boltzflow.models.tbg_ic import fit_chemistry, load_peptide_ics, normalization_for
    from boltzflow.transforms.base import Chain

    raw = load_peptide_ics(dataset, ic_vocabulary(), key_version=key_version)
    stats = fit_chemistry([m for m, _ in raw], [f for _, f in raw])
    system = systems.get(system_id)
    mol = describe_molecule(system.topology, ic_vocabulary(), system_id,
                            key_version=key_version, positions=system.positions)
    circular = torch.nonzero(mol.flat(mol.circular[None].float())[0].bool())[:, 0].tolist()
    flow = Flow(ProductBase(mol.ic.dim, circular),
                Chain([normalization_for(mol, stats), mol.ic]), (mol.n_rows, 3))
    with torch.no_grad():
        return mol, stats, flow.sample(n).double()


def test_middle_residues_and_caps_take_their_dipeptide_analogs(tiny_dipeptides):
    """Key version 3: a model trained on uncapped dipeptides has, for a tripeptide's middle
    residue and for the caps, the statistics of the same chemistry in a dipeptide. Before it
    the middle residue's peptide bond fell back to the element key (C–N pools the peptide bond
    with Cα–N: 0.142 nm instead of 0.134) and its carbonyl O sat on the next residue's N."""
    for sid in ("peptide:AGS", "peptide:ACE-ALA-ALA-NME"):
        system = systems.get(sid)
        atoms = list(system.topology.atoms)
        peptide_bonds = [(a.index, b.index) for a, b in system.topology.bonds
                         if {a.name, b.name} == {"C", "N"} and a.residue != b.residue]
        carbonyls = [(o.index, n.index) for o in atoms for n in atoms
                     if o.name == "O" and n.name == "N" and n.residue.index == o.residue.index + 1]
        amide = {}
        for version in (2, 3):
            mol, stats, x = _analog_samples(tiny_dipeptides, sid, version)
            bond = torch.stack([(x[:, i] - x[:, j]).norm(dim=-1) for i, j in peptide_bonds])
            gap = torch.stack([(x[:, i] - x[:, j]).norm(dim=-1) for i, j in carbonyls])
            amide[version] = (bond.median().item(), gap.min().item())
        assert abs(amide[3][0] - 0.1335) < 0.002, (sid, amide)  # MD: 0.134 nm
        assert amide[3][1] > 0.2, (sid, amide)  # O and the next N: 0.225 nm apart in a peptide
        assert amide[2][0] > 0.138 or amide[2][1] < 0.2, (sid, amide)  # what version 2 did
    # the caps' methyl hydrogens keep ±120° apart (signed keys), here NME's
    mol, stats, x = _analog_samples(tiny_dipeptides, "peptide:ACE-ALA-ALA-NME", 3)
    atoms = list(systems.get("peptide:ACE-ALA-ALA-NME").topology.atoms)
    methyl = [a.index for a in atoms if a.residue.name == "NME" and a.name in ("H1", "H2", "H3")]
    pairs = [(methyl[i], methyl[j]) for i in range(3) for j in range(i + 1, 3)]
    closest = min((x[:, i] - x[:, j]).norm(dim=-1).min().item() for i, j in pairs)
    assert closest > 0.14, closest  # H–H in a methyl group: 0.178 nm


def test_upgrading_keys_leaves_dipeptides_alone(tiny_dipeptides, tmp_path):
    """A key-version-2 model upgraded to version 3 (new statistics added, none changed)
    samples an uncapped dipeptide exactly as before."""
    import yaml

    from boltzflow.models.tbg_ic import TBGICKind
    from boltzflow.training import save_checkpoint

    config = parse_config({**TINY, "system": {"dataset": str(tiny_dipeptides)},
                           "train": {**TINY["train"], "steps": 3}})
    run = tmp_path / "v2"
    runs.train(config, run, progress=False)
    state = load_checkpoint(run / "checkpoint.pt")
    state["metadata"]["key_version"] = 2  # as the shipped model was trained
    from boltzflow.models.tbg_ic import fit_chemistry, load_peptide_ics

    raw = load_peptide_ics(tiny_dipeptides, ic_vocabulary(), key_version=2)
    state["metadata"]["stats"] = fit_chemistry([m for m, _ in raw], [f for _, f in raw])
    save_checkpoint(run / "checkpoint.pt", state)
    up = tmp_path / "v3"
    up.mkdir()
    (up / "config.yaml").write_text((run / "config.yaml").read_text())
    upgraded = dict(state, metadata=TBGICKind.upgrade_keys(state["metadata"], tiny_dipeptides))
    save_checkpoint(up / "checkpoint.pt", upgraded)
    meta = upgraded["metadata"]
    assert meta["key_version"] == 3 and set(state["metadata"]["stats"]) < set(meta["stats"])
    assert all(meta["stats"][k] == v for k, v in state["metadata"]["stats"].items())
    assert yaml.safe_load((up / "config.yaml").read_text())["model"] == "tbg-ic"

    system = systems.get("dipeptide:AC")
    flows = [runs.load_run(d).model.flow_for(system) for d in (run, up)]
    with torch.no_grad():
        torch.manual_seed(5)
        x, log_q = flows[0].sample_and_log_prob(64)
        torch.manual_seed(5)
        x3, log_q3 = flows[1].sample_and_log_prob(64)
    torch.testing.assert_close(x3, x, atol=0, rtol=0)
    torch.testing.assert_close(log_q3, log_q, atol=0, rtol=0)
    with pytest.raises(BoltzflowError, match="only key version 2"):
        TBGICKind.upgrade_keys(meta, tiny_dipeptides)


def test_rigid_torsions_stay_within_pi_so_log_q_is_exact(tiny_dipeptides, tmp_path):
    """A rigid torsion with a wide spread (here 2 rad) wraps past ±π unless bounded: then two
    latent values give one torsion and log q, evaluated back, disagrees with sampling."""
    import copy

    config = parse_config({**TINY, "system": {"dataset": str(tiny_dipeptides)},
                           "train": {**TINY["train"], "steps": 2}}, source="test")
    runs.train(config, tmp_path / "run", progress=False)
    run = runs.load_run(tmp_path / "run")
    assert run.model.layout["torsion_bound"] and run.model.layout["key_version"] == 4
    system = systems.get("dipeptide:AC")
    mol = run.model.molecule(system)
    circular = mol.flat(mol.circular[None].float())[0].bool()
    rigid = [i for i in mol.ic.torsion_indices.tolist() if not circular[i]]
    used = {next(k for k in mol.keys[i] if k in run.model.stats) for i in rigid[:6]}
    for key in used:
        run.model.stats[key] = [run.model.stats[key][0], 2.0]
    mismatch = {}
    for bounded in (False, True):
        model = copy.copy(run.model)
        model.layout = {**run.model.layout, "torsion_bound": bounded}
        flow = model.flow_for(system).double()
        torch.manual_seed(1)
        with torch.no_grad():
            x, log_q = flow.sample_and_log_prob(1000)
            back = flow.log_prob(x)
        mismatch[bounded] = int(((back - log_q).abs() > 1e-4).sum())
    assert mismatch[False] > 50 and mismatch[True] == 0


def test_reverse_kl_on_training_peptides_fine_tunes_a_likelihood_run(tiny_dipeptides, tmp_path):
    """A likelihood run resumed with ``w_kl``: the energy term enters from ``kl_start`` on, its
    gradient reaches the shared parameters, and the log gains its ``nll``/``kl`` columns."""
    import csv

    base = {**TINY, "system": {"dataset": str(tiny_dipeptides)}}
    out = tmp_path / "run"
    runs.train(parse_config({**base, "train": {**TINY["train"], "steps": 3}}, source="t"),
               out, progress=False)
    tuned = {**base, "train": {**TINY["train"], "steps": 20},
             "tbg-ic": {**TINY["tbg-ic"], "w_kl": 1.0, "kl_start": 15, "kl_peptides": 2,
                        "kl_samples": 4}}
    run = runs.train(parse_config(tuned, source="t"), out, progress=False)
    with (out / "train_log.csv").open() as f:
        rows = list(csv.DictReader(f))  # a row every 10 steps and at the end of each call
    assert [int(r["step"]) for r in rows] == [3, 10, 20]
    assert rows[0]["kl"] == "" and rows[1]["kl"] == "nan"  # before the resume; before kl_start
    assert torch.isfinite(torch.tensor(float(rows[2]["kl"])))
    assert float(rows[2]["loss"]) == pytest.approx(float(rows[2]["nll"]) + float(rows[2]["kl"]))
    kind = run.model
    kind.module.zero_grad()
    kind._reverse_kl(step=15).backward()
    grads = [p.grad for p in kind.module.parameters() if p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0


def test_log_weight_variance_term_reads_minus_log_w_up_to_a_constant(tiny_dipeptides, tmp_path):
    """``w_lv``: per frame, the tables' log-density plus the stored offset is ``log q(x) + u(x)``
    of the peptide's own flow and energy up to one constant per peptide; the term enters the
    loss from ``kl_start`` on and the log gains its column."""
    import csv

    from boltzflow.data.dipeptides import load_index

    config = parse_config({**TINY, "system": {"dataset": str(tiny_dipeptides)},
                           "train": {**TINY["train"], "steps": 4},
                           "tbg-ic": {**TINY["tbg-ic"], "w_lv": 1.0, "kl_start": 2}},
                          source="t")
    run = runs.train(config, tmp_path / "run", progress=False)
    model = run.model
    pep = model.peptides[0]
    frames = load_index(tiny_dipeptides).dataset(pep.molecule.label)
    system = systems.get(pep.system_id)
    with torch.no_grad():
        n = len(pep.tables)
        z, logdet = model.module.inverse(pep.tables, RowContext.pad([pep.molecule] * n))
        table_log_q = log_prior(z, RowContext.pad([pep.molecule] * n)) + logdet + pep.logdet
        flow = model.flow_for(system)
        x = frames.positions.float()
        minus_log_w = flow.log_prob(x) + system.energy.energy(x)
    diff = (table_log_q + pep.offset - minus_log_w).double()
    assert diff.std() < 1e-2 and minus_log_w.std() > 1.0  # a constant; the weights are not
    rows = list(csv.DictReader((tmp_path / "run" / "train_log.csv").open()))
    assert float(rows[-1]["lv"]) > 0
    before, after = model.loss(model.batch(1), 1), model.loss(model.batch(2), 2)
    assert before["lv"].isnan() and before["loss"] == before["nll"]
    torch.testing.assert_close(after["loss"], after["nll"] + after["lv"])


def test_max_frames_keeps_evenly_spaced_frames_of_each_peptide(tiny_dipeptides):
    """``system.max_frames`` (one dense MD standing for a sparser one, docs/benchmarks.md): each
    peptide keeps that many frames spread over its whole trajectory, first and last included,
    and the same frames' energies (the log-weight variance pairs them by position)."""
    from boltzflow.data.dipeptides import load_index
    from boltzflow.models.tbg_ic import evenly_spaced, load_peptide_ics, load_peptide_offsets

    x = torch.arange(40.0)
    assert evenly_spaced(x, 5).tolist() == [0.0, 10.0, 20.0, 29.0, 39.0]
    assert torch.equal(evenly_spaced(x, 0), x) and torch.equal(evenly_spaced(x, 100), x)
    full = load_peptide_ics(tiny_dipeptides, ic_vocabulary())
    thin = load_peptide_ics(tiny_dipeptides, ic_vocabulary(), max_frames=5)
    assert [m.label for m, _ in thin] == [m.label for m, _ in full] == ["AA", "GS", "PA"]
    index = load_index(tiny_dipeptides)
    for (mol, flat), (_, all_flat) in zip(thin, full, strict=True):
        n = len(index.dataset(mol.label))
        assert len(all_flat) == n > 5 and len(flat) == 5
        picked = torch.linspace(0, n - 1, 5).round().long()
        assert picked[0] == 0 and picked[-1] == n - 1
        # the same frames: the transform of a thinner batch may round 1 ulp differently
        torch.testing.assert_close(flat, all_flat[picked], atol=1e-12, rtol=0)
    mols = [m for m, _ in thin]
    offsets = load_peptide_offsets(tiny_dipeptides, mols, max_frames=5)
    all_offsets = load_peptide_offsets(tiny_dipeptides, mols)
    for off, all_off in zip(offsets, all_offsets, strict=True):
        picked = torch.linspace(0, len(all_off) - 1, 5).round().long()
        torch.testing.assert_close(off, all_off[picked], atol=1e-4, rtol=0)


def test_planar_hydrogen_torsions_keep_their_key_on_either_side_of_pi():
    """Key version 4: an aromatic or amide hydrogen's rigid torsion sits at ±π, where its sign
    is a coin toss between the structure the statistics were fitted on and the one sampled
    (Trp's HH2 then fell back to a key 0.8 rad off, docs/benchmarks.md). Flipped across π, the
    keys stay the same; in key version 3 they change, and methylene hydrogens keep their sign."""
    system = systems.get("dipeptide:FW")
    positions = torch.as_tensor(system.positions, dtype=torch.float64)

    def keys(version: int, x) -> list[str]:
        return [k[0] for k in describe_molecule(system.topology, ic_vocabulary(), "FW",
                                                key_version=version, positions=x).keys]

    built = keys(4, positions)
    planar = [i for i, k in enumerate(built) if k.endswith(":pi")]
    ring_h = [k for k in built if k.startswith(("t:PHE:HZ", "t:TRP:HH", "t:PHE:HE", "t:TRP:HZ"))]
    assert ring_h and all(k.endswith(":pi") for k in ring_h)
    assert any(k.startswith("t:PHE:HB") and k.endswith((":+", ":-")) for k in built)
    ic = describe_molecule(system.topology, ic_vocabulary(), "FW", key_version=4,
                           positions=positions).ic
    flat = ic.inverse(positions[None])[0]
    sides = []
    for side in (1.0, -1.0):
        z = flat.clone()
        for i in planar:
            z[0, i] = side * (math.pi - 0.05) if abs(float(z[0, i])) > 2.0 else z[0, i]
        sides.append(ic.forward(z)[0][0])
    assert set(planar) <= set(ic.torsion_indices.tolist())
    assert keys(4, sides[0]) == keys(4, sides[1]) == built
    assert keys(3, sides[0]) != keys(3, sides[1])
