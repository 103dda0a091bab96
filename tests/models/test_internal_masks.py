"""Coupling masks of the ``internal`` kind: neighbouring free torsions condition on each other.

By position in the coordinate vector (bonds, angles, torsions; parity and half), the φ, ψ and
ω torsions of a capped Trp-Gly's two residues had one code, so no coupling layer let φ see ψ;
the flow's joint (φ, ψ) of Gly carried a fifth of MD's mutual information
(``docs/molecules.md``)."""

from __future__ import annotations

import itertools

import pytest
import torch

import boltzflow as bf
from boltzflow.errors import BoltzflowError
from boltzflow.models import parse_config
from boltzflow.models.internal import (
    TORSION_MASKS,
    InternalKind,
    amide_bonds,
    build_molecular_flow,
    torsion_mask_codes,
)
from boltzflow.systems.encoding import covalent_hops
from boltzflow.transforms import InternalCoordinates, coupling_masks
from boltzflow.transforms.ic_normalization import rigid_torsions
from boltzflow.transforms.zmatrix import build_zmatrix

TRP_GLY = "peptide:ACE-TRP-GLY-NME"


def _meets(masks: list[torch.Tensor], i: int, j: int) -> int:
    """In how many layers one of ``i``, ``j`` is transformed while the other conditions it."""
    return sum(bool(m[i]) != bool(m[j]) for m in masks)


def test_masks_split_exactly_the_coordinates_whose_codes_differ():
    codes = torch.tensor([0, 1, 2, 3, 0, 3, 1])
    masks = coupling_masks(7, 6, codes)
    for i, j in itertools.combinations(range(7), 2):
        a, b = int(codes[i]), int(codes[j])
        expected = 0 if a == b else (4 if a % 2 != b % 2 else 0) + (2 if a // 2 != b // 2 else 0)
        assert _meets(masks, i, j) == expected, (i, j)
    # the default: even/odd, then halves (what every flow before the codes had)
    index = torch.arange(5)
    assert [m.tolist() for m in coupling_masks(5, 4)] == [
        (index % 2 == 0).tolist(), (index % 2 == 1).tolist(),
        (index < 3).tolist(), (index >= 3).tolist()]
    with pytest.raises(ValueError, match="codes must be 5 integers in 0..3"):
        coupling_masks(5, 4, torch.tensor([0, 1, 2, 3, 4]))


def _free_torsions(system_id: str):
    system = bf.systems.get(system_id)
    ic = InternalCoordinates(build_zmatrix(system.topology, ring_closures=True))
    circular = ic.torsion_indices[~rigid_torsions(ic, system.topology, rings=True)].tolist()
    first = int(ic.torsion_indices[0])
    atoms = list(system.topology.atoms)
    named = {}
    for t in circular:
        a, b, c, d = (atoms[int(k)] for k in ic.zmatrix.rows[3 + t - first])
        named[t] = (b.index, c.index, f"{b.residue.name}{b.residue.index}:{b.name}-{c.name}")
    return system, ic, circular, named


@pytest.mark.parametrize("system_id", ["aldp-implicit", TRP_GLY, "peptide:ACE-PRO-PHE-NME"])
def test_neighbouring_free_torsions_get_different_codes(system_id):
    system, ic, circular, named = _free_torsions(system_id)
    codes = torsion_mask_codes(ic, circular, system.topology)
    masks = coupling_masks(ic.dim, 6, codes)
    hops = covalent_hops(system.topology, 2)
    for s, t in itertools.combinations(circular, 2):
        shared = min(int(hops[x, y]) for x in named[s][:2] for y in named[t][:2]) == 0
        if shared:  # axes share an atom: they see each other in some layer
            assert codes[s] != codes[t], (named[s][2], named[t][2])
            assert _meets(masks, s, t) >= 2
    # every residue's φ (axis N-CA) and ψ (CA-C) differ in bit 0: they meet in four layers of six
    atoms = list(system.topology.atoms)
    by_axis = {(atoms[b].residue.index, frozenset((atoms[b].name, atoms[c].name))): t
               for t, (b, c, _) in named.items()}
    pairs = 0
    for res in {a.residue.index for a in atoms}:
        phi = by_axis.get((res, frozenset(("N", "CA"))))
        psi = by_axis.get((res, frozenset(("CA", "C"))))
        if phi is not None and psi is not None:
            assert _meets(masks, phi, psi) >= 4, (res, int(codes[phi]), int(codes[psi]))
            pairs += 1
    assert pairs >= 1


def test_positional_masks_never_let_trp_gly_backbone_torsions_meet():
    """What the torsion codes fix (the codes of the flow before them)."""
    system, ic, circular, named = _free_torsions(TRP_GLY)
    masks = coupling_masks(ic.dim, 6)
    backbone = [t for t, (_, _, name) in named.items()  # φ, ψ of Trp and Gly, ω between them
                if name.startswith(("TRP", "GLY"))
                and name.split(":")[1] in ("N-CA", "CA-N", "CA-C", "C-CA", "C-N", "N-C")]
    assert len(backbone) == 5
    assert all(_meets(masks, s, t) == 0 for s, t in itertools.combinations(backbone, 2))
    codes = torsion_mask_codes(ic, circular, system.topology)
    assert sum(_meets(coupling_masks(ic.dim, 6, codes), s, t) > 0
               for s, t in itertools.combinations(backbone, 2)) >= len(backbone)


def test_torsion_masks_flow_is_exact_and_old_checkpoints_keep_theirs():
    system = bf.systems.get(TRP_GLY)
    config = parse_config({"model": "internal", "system": {"id": TRP_GLY},
                           "internal": {"n_layers": 4, "hidden": [16]}})
    torch.manual_seed(0)
    flow = build_molecular_flow(system, config.params).double()
    for p in flow.parameters():
        p.data.normal_(0, 0.1)
    x, log_q = flow.sample_and_log_prob(64)
    ok = torch.isfinite(log_q)
    assert ok.float().mean() > 0.8
    assert torch.allclose(flow.log_prob(x[ok]), log_q[ok], atol=1e-7)
    new = InternalKind.build(config, bf.models.TrainingSet(system))
    assert new.metadata()["torsion_masks"] == TORSION_MASKS == 1
    old = InternalKind.restore(config, {"ring_closures": True, "tail_bound": 10.0}, system)
    assert old.metadata()["torsion_masks"] == 0
    positional = [layer.mask for layer in old.module.bijection.bijections[0].bijections[:4]]
    assert [m.tolist() for m in positional] == [m.tolist() for m in coupling_masks(
        old.module.bijection.bijections[2].dim, 4)]
    assert old.module.state_dict().keys() == new.module.state_dict().keys()


def test_version_2_puts_the_backbone_pairs_apart_in_both_bits_and_each_version_loads():
    """Pro-Phe: version 1 lets the Pro-Phe ω take bit 0 from Phe's φ, so Pro's ψ and Phe's φ
    meet in two layers of six; with the amide ω weighted down (version 2) they differ in both
    bits (every layer), and so do Phe's φ and ψ. A checkpoint restores the version it records
    (``True`` from the first models reads as 1)."""
    system, ic, circular, named = _free_torsions("peptide:ACE-PRO-PHE-NME")
    amides = amide_bonds(system.topology)
    atoms = list(system.topology.atoms)
    assert len(amides) == 3 and all(
        {atoms[i].element.symbol for i in bond} == {"C", "N"} for bond in amides)
    axis = {name.split(":")[0] + ":" + name.split(":")[1]: t for t, (_, _, name) in named.items()}
    psi_pro, phi_phe, psi_phe = axis["PRO1:CA-C"], axis["PHE2:CA-N"], axis["PHE2:C-CA"]
    for version, meets in ((1, 2), (2, 6)):
        masks = coupling_masks(ic.dim, 6, torsion_mask_codes(ic, circular, system.topology,
                                                             version))
        assert _meets(masks, psi_pro, phi_phe) == meets
    assert _meets(masks, phi_phe, psi_phe) == 6
    config = parse_config({"model": "internal", "system": {"id": system.id},
                           "internal": {"n_layers": 6, "hidden": [16]}})
    for recorded, version in ((True, 1), (2, 2)):
        kind = InternalKind.restore(config, {"ring_closures": True, "tail_bound": 10.0,
                                             "torsion_masks": recorded}, system)
        assert kind.metadata()["torsion_masks"] == version
        layers = kind.module.bijection.bijections[0].bijections[:6]
        assert [m.mask.tolist() for m in layers] == [m.tolist() for m in coupling_masks(
            ic.dim, 6, torsion_mask_codes(ic, circular, system.topology, version))]
    with pytest.raises(BoltzflowError, match="internal.torsion_masks"):
        parse_config({"model": "internal", "internal": {"torsion_masks": 3}})
