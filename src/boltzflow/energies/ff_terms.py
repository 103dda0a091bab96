"""Energies and analytic forces of the Amber terms (kJ/mol): bonds, angles, torsions, LJ + Coulomb,
OBC GB/SA; the batched kernel behind :class:`~boltzflow.energies.forcefield.TorchForceField`.

Layout: *batch last*. Positions are ``xt: [3, N, B]`` (coordinate, atom, configuration) and pair
quantities are tables ``[P, B]`` over the ``P = N (N - 1) / 2`` unordered pairs ``i < j``, so that
per-pair parameters are ``[P, 1]`` columns broadcast along the batch and gathers
(``index_select`` on dim 0) copy contiguous rows. Everything symmetric in ``i, j`` (distances,
LJ, Coulomb, the GB pair energy ``q_i q_j / f_ij``) is computed once per pair. What is summed
over the partners of each atom (the OBC integrals, which are not symmetric, ``∂U/∂B`` and the
forces) is laid out per atom, ``[N, N - 1, B]`` (the partners ``j ≠ i`` of atom ``i``, in
order), with the pair quantities gathered into it, and reduced over dim 1.

Forces are written out analytically (no autograd graph), as OpenMM does. Every term that depends
on the configuration only through pair distances (bonds, angles, LJ, Coulomb, GB) contributes a
weight ``W_ij = (∂U/∂r_ij) / r_ij`` to one pair table; the gradient is then
``∂U/∂x_i = Σ_j W_ij (x_i - x_j)`` in one pass at the end. Angles are written as functions of the
three distances of their atoms (law of cosines); only the torsions have Cartesian forces, added
with ``index_add_``.

The code avoids ``torch.where`` and boolean masks (slow on CPU): the piecewise parts of the OBC
integral are written with ``maximum`` so that they vanish exactly where they must, and
exclusions and 1-4 scaling are in the parameter columns. The same code runs eagerly or through
``torch.compile`` (which fuses its elementwise passes; see ``TorchForceField(compile=True)``).

References:
    Onufriev, Bashford, Case (2004), "Exploring protein native states and large-scale
    conformational changes with a modified generalized Born model", Proteins 55, 383.
    Hawkins, Cramer, Truhlar (1996), "Parametrized models of aqueous free energies of solvation
    based on pairwise descreening of solute atomic charges from a dielectric medium",
    J. Phys. Chem. 100, 19824.
    Blondel, Karplus (1996), "New formulation for derivatives of torsion angles and improper
    torsion angles in molecular mechanics", J. Comput. Chem. 17, 1132.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

#: Coulomb constant 1/(4π ε0) in kJ nm / (mol e²), as OpenMM 8 uses it in NonbondedForce and
#: GBSAOBCForce (CODATA 2018).
ONE_4PI_EPS0 = 138.93545764438198
#: The Coulomb constant hard-coded in the expressions of ``openmm.app``'s Amber CustomGBForces.
ONE_4PI_EPS0_CUSTOM_GB = 138.935485
#: ``exp(-D)`` of the GB pair function is cut at ``D = 80`` (``e^-80 ≈ 2e-35``, far below the
#: precision of ``r²`` it is added to) so that it never produces float32 denormals (slow).
_MAX_GB_EXPONENT = 80.0
#: Angle force: ``sin θ`` is clamped here, so that a (nearly) linear angle gets a large finite
#: force rather than inf or NaN.
_MIN_SIN = 1e-6


# --- models ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GBScreening:
    """Dielectric screening ``s(f) = -k_e (1/ε_solute - exp(-κ f)/ε_solvent)``, kJ nm/mol/e²."""

    coulomb_constant: float
    solute_dielectric: float
    solvent_dielectric: float
    kappa: float = 0.0

    @property
    def prefactor(self) -> float:
        """``s(f)`` without salt: ``-k_e (1/ε_solute - 1/ε_solvent)``."""
        return -self.coulomb_constant * (1 / self.solute_dielectric - 1 / self.solvent_dielectric)


@dataclass(frozen=True)
class OBCModel:
    """Constants of one OBC GB/SA variant (``ψ`` polynomial, offset, screening, ACE term)."""

    name: str
    alpha: float
    beta: float
    gamma: float
    inside_correction: bool
    screening: GBScreening
    surface_factor: float  # 4π γ_SA in kJ/mol/nm²; 0 disables the ACE term
    offset: float = 0.009
    probe_radius: float = 0.14


# --- parameters in the kernel's layout ---------------------------------------------------------


@dataclass(frozen=True)
class GBParameters:
    """OBC parameters: per atom and partner ``[N (N - 1), 1]``, per pair ``[P, 1]``, per atom
    ``[N, 1]``.

    The integral columns are the ordered pairs ``(i, j)``, ``j ≠ i``, as
    :attr:`Parameters.partners`: ``scaled_radius`` is ``sr_j`` (the atom that descreens) with
    ``scaled_radius_sq = sr_j²``; ``offset_radius`` and ``inv_offset_radius`` are ``or_i`` and
    ``1/or_i`` (the atom whose Born radius it is). ``charge_prod`` is ``q_i q_j`` times
    the screening prefactor ``s`` without salt, or times ``-k_e`` with salt; ``self_charge`` is
    ``½ q_i²`` times the same, for the self energies.
    """

    model: OBCModel
    scaled_radius: Tensor
    scaled_radius_sq: Tensor
    offset_radius: Tensor
    inv_offset_radius: Tensor
    charge_prod: Tensor
    self_charge: Tensor  # [N, 1]
    atom_offset_radius: Tensor  # or_i [N, 1]
    atom_inv_offset_radius: Tensor  # 1/or_i
    atom_radius: Tensor  # R_i
    atom_radius_ratio: Tensor  # or_i / R_i
    ace_prefactor: Tensor  # 4π γ (R + probe)² R⁶ [N, 1]; ACE energy = prefactor / B⁶


@dataclass(frozen=True)
class Parameters:
    """Everything :func:`evaluate` needs, in one dtype and on one device.

    The pairs ``i < j`` are listed by ``pair_atoms`` (all first atoms, then all second ones).
    The per-atom layout lists the partners ``j ≠ i`` of every atom ``i`` in turn: ``partners``
    are the atoms ``j``, ``partner_pairs`` the pairs ``{i, j}``, and ``pair_directions`` the rows
    of ``(i, j)`` and then of ``(j, i)`` for the pairs ``i < j`` (to fold a per-atom table back
    onto the pairs).

    Bonded terms index the pair table or the atoms; their parameters are columns ``[n, 1]``.
    Torsions are evaluated on their distinct atom quadruples (``torsion_atoms``: the first atoms
    of all quadruples, then the second ones, ...), ``torsion_quad`` maps each torsion term to its
    quadruple (``None`` when they are all distinct).

    Nonbonded parameters are pair columns ``[P, 1]``: ``coulomb = k_e q_i q_j``,
    ``lj_epsilon4 = 4 ε_ij``, ``lj_sigma_sq = σ_ij²``; zero for exclusions, exceptions applied.
    """

    n_atoms: int
    pair_atoms: Tensor  # [2 P]
    partners: Tensor  # [N (N - 1)]
    partner_pairs: Tensor  # [N (N - 1)]
    pair_directions: Tensor  # [2 P]
    n_bonds: int = 0
    n_angles: int = 0
    bonded_pairs: Tensor | None = None  # [nb + 3 na]: bonds, then the pairs (a,b), (c,b), (a,c)
    bond_length: Tensor | None = None  # of the angles a-b-c
    bond_k: Tensor | None = None
    angle_theta0: Tensor | None = None
    angle_k: Tensor | None = None
    torsion_atoms: Tensor | None = None  # [4 nq]
    torsion_quad: Tensor | None = None  # [nt]
    torsion_periodicity: Tensor | None = None
    torsion_phase: Tensor | None = None
    torsion_k: Tensor | None = None
    torsion_minus_kn: Tensor | None = None  # -k n
    torsion_k_sum: Tensor | None = None  # Σ k, 0-dim
    coulomb: Tensor | None = None
    lj_sigma_sq: Tensor | None = None
    lj_epsilon4: Tensor | None = None
    gb: GBParameters | None = None

    @property
    def names(self) -> tuple[str, ...]:
        """Names of the energy terms, in the order of the rows of :func:`evaluate`'s output."""
        return term_names(None if self.gb is None else self.gb.model)


def term_names(gb_model: OBCModel | None) -> tuple[str, ...]:
    """Names of the energy terms with the generalized Born model ``gb_model`` (or none)."""
    names = ("bond", "angle", "torsion", "coulomb", "lj")
    if gb_model is None:
        return names
    return names + (("gb_polar", "gb_nonpolar") if gb_model.surface_factor else ("gb_polar",))


# --- geometry ----------------------------------------------------------------------------------


def pair_table(xt: Tensor, pair_atoms: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``r², r, 1/r: [P, B]`` of the pairs ``pair_atoms: [2 P]`` (all first atoms, then all second
    ones) of the positions ``xt: [3, N, B]``."""
    xa = xt.index_select(1, pair_atoms).view(3, 2, -1, xt.shape[-1])
    d = xa[:, 0] - xa[:, 1]
    r2 = torch.mul(d[0], d[0])
    r2.addcmul_(d[1], d[1]).addcmul_(d[2], d[2])
    r = r2.sqrt()
    return r2, r, r.reciprocal()


def per_atom(table: Tensor, index: Tensor, n: int) -> Tensor:
    """The rows ``index: [N (N - 1)]`` of ``table: [M, B]`` as ``[N, N - 1, B]``."""
    return table.index_select(0, index).view(n, n - 1, -1)


def dihedrals(xt: Tensor, atoms: Tensor) -> Tensor:
    """IUPAC dihedral angles ``[T, B]`` (rad, in (-π, π]) of the quadruples ``atoms: [4 T]``
    (the first atoms of all quadruples, then the second ones, ...) of ``xt: [3, N, B]``."""
    return _torsion_geometry(xt, atoms)[0]


def _torsion_geometry(xt: Tensor, atoms: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``φ: [T, B]``, ``m = b1 × b2`` and ``n = b2 × b3`` as ``[3, 2, T, B]``, the dot products
    ``b1·b2, b2·b2, b3·b2: [3, T, B]`` and ``|b2|``, with ``b_k = x_k - x_(k-1)``."""
    t, b = len(atoms) // 4, xt.shape[-1]
    # components x, y, z, x, y: the cross products are products of shifted views
    xa = torch.cat([xt, xt[:2]]).index_select(1, atoms).view(5, 4, t, b)
    bonds = xa[:, 1:] - xa[:, :-1]  # [5, 3, T, B]: b1, b2, b3
    u, v = bonds[:, :2], bonds[:, 1:]
    mn = u[1:4] * v[2:5] - u[2:5] * v[1:4]
    bonds = bonds[:3]
    n = mn[:, 1]
    dots = (bonds * bonds[:, 1:2]).sum(0)
    b2_norm = dots[1].sqrt()
    phi = torch.atan2((bonds[:, 0] * n).sum(0).mul_(b2_norm), (mn[:, 0] * n).sum(0))
    return phi, mn, dots, b2_norm


# --- the terms ---------------------------------------------------------------------------------


def torsion_terms(xt: Tensor, p: Parameters, grad: bool) -> tuple[Tensor, Tensor | None]:
    """Energy ``Σ k (1 + cos(n φ - φ0)): [B]`` of the periodic torsions and, with ``grad``, its
    gradient on the four atoms of each quadruple, ``[3, 4 nq, B]`` (atoms as ``torsion_atoms``)."""
    phi, mn, dots, b2_norm = _torsion_geometry(xt, p.torsion_atoms)
    phi_terms = phi if p.torsion_quad is None else phi.index_select(0, p.torsion_quad)
    arg = (p.torsion_periodicity * phi_terms).sub_(p.torsion_phase)
    energy = (p.torsion_k * arg.cos()).sum(0).add_(p.torsion_k_sum)
    if not grad:
        return energy, None
    du_dphi = arg.sin_().mul_(p.torsion_minus_kn)
    if p.torsion_quad is not None:
        du_dphi = phi.new_zeros(phi.shape).index_add_(0, p.torsion_quad, du_dphi)
    # Blondel & Karplus: ∂φ/∂x0 = -|b2| m/|m|², ∂φ/∂x3 = |b2| n/|n|², and with
    # p = b1·b2/|b2|², q = b3·b2/|b2|²: ∂φ/∂x1 = q ∂φ/∂x3 - (1 + p) ∂φ/∂x0,
    # ∂φ/∂x2 = p ∂φ/∂x0 - (1 + q) ∂φ/∂x3
    coef = (mn * mn).sum(0).reciprocal_().mul_(b2_norm.mul_(du_dphi))
    fm = mn.mul_(coef)  # [3, 2, T, B]: -∂U/∂x0 and ∂U/∂x3
    pq = dots[0::2].div_(dots[1])  # [2, T, B]: p, q
    s = (fm * pq).sum(1)  # p fm0 + q fm1
    g = torch.stack([fm[:, 0].neg(), fm[:, 0] + s, s.add_(fm[:, 1]).neg_(), fm[:, 1]], 1)
    return energy, g.view(3, -1, xt.shape[-1])


def obc_integral(
    r: Tensor, rinv: Tensor, rinv2: Tensor | None, gb: GBParameters, grad: bool
) -> tuple[Tensor, Tensor | None]:
    """HCT/OBC pair integrals ``I_ij`` of atom ``j`` seen by atom ``i``, and ``∂I_ij/∂r``.

    ``I_ij = ½ [1/L - 1/U + ¼ (r - s²/r)(1/U² - 1/L²) + ½ ln(L/U)/r]`` with ``s = sr_j``,
    ``L = max(or_i, |r - s|)``, ``U = r + s``; zero when ``r + s < or_i``: there ``U`` is raised to
    ``or_i``, which makes ``L = U = or_i`` and the integral and its derivative exactly zero.
    With ``δ = 1/L - 1/U``, ``σ = 1/L + 1/U`` it is ``δ (½ - ⅛ (r - s²/r) σ) + ¼ ln(L/U)/r``.
    With ``inside_correction`` (OpenMM's native ``GBSAOBCForce``; not the CustomGBForce of
    ``implicit/obc*.xml``) it adds ``1/or_i - 1/L`` when atom ``i`` lies inside atom ``j``
    (``or_i < s - r``), written as ``1/or_i - 1/max(or_i, s - r)``.

    The derivative at fixed ``L`` is ``-⅛ (1 + s²/r²) δ σ - ¼ ln(L/U)/r²``. ``∂I/∂L`` vanishes
    where ``L = r - s``; where ``L = s - r`` (``i`` inside ``j``) the inside correction cancels it,
    and without the correction it adds ``1/L²``.

    Args:
        r, rinv, rinv2: distances, ``1/r`` and ``1/r²`` (``rinv2`` only with ``grad``),
            broadcastable with ``gb``'s columns.
    """
    s, offset = gb.scaled_radius, gb.offset_radius
    upper = torch.add(r, s)
    torch.maximum(upper, offset, out=upper)  # U, raised to or_i where r + s < or_i
    r_minus_s = torch.sub(r, s)
    lower = torch.maximum(r_minus_s.abs(), offset)  # L
    inv_u = upper.reciprocal_()
    inv_l = lower.reciprocal()
    log_ratio = lower.mul_(inv_u).log_()  # ln(L/U)
    delta = torch.sub(inv_l, inv_u)
    sigma = inv_l.add_(inv_u)
    a = torch.addcmul(r, gb.scaled_radius_sq, rinv, value=-1)  # r - s²/r
    term = a.mul_(sigma).mul_(-0.125).add_(0.5).mul_(delta)
    term.addcmul_(log_ratio, rinv, value=0.25)
    correction = gb.model.inside_correction
    if correction or grad:
        inside = torch.maximum(r_minus_s.neg_(), offset)  # max(or_i, s - r)
    if correction:
        term.add_(gb.inv_offset_radius).sub_(inside.reciprocal())
    if not grad:
        return term, None
    dterm = torch.mul(gb.scaled_radius_sq, rinv2).add_(1).mul_(delta).mul_(sigma).mul_(-0.125)
    dterm.addcmul_(log_ratio, rinv2, value=-0.25)
    if not correction:  # + 1/L² where i lies inside j (there max(or_i, s - r) > or_i)
        is_inside = torch.sub(inside, offset).sign_()
        dterm.addcmul_(is_inside, inside.reciprocal_().square_())
    return term, dterm


def obc_born_radii(integral: Tensor, gb: GBParameters, grad: bool) -> tuple[Tensor, Tensor | None]:
    """OBC Born radii ``B = 1 / (1/or - tanh(α ψ - β ψ² + γ ψ³) / R)``, ``ψ = I or``, and
    ``dB/dI``; ``integral: [N, B]``."""
    model = gb.model
    psi = integral * gb.atom_offset_radius
    th = torch.tanh(psi * (model.alpha - psi * (model.beta - model.gamma * psi)))
    born = (gb.atom_inv_offset_radius - th / gb.atom_radius).reciprocal_()
    if not grad:
        return born, None
    dpoly = model.alpha - psi * (2 * model.beta - 3 * model.gamma * psi)
    sech2 = th.square_().neg_().add_(1)
    return born, (born * born).mul_(sech2).mul_(dpoly).mul_(gb.atom_radius_ratio)


def evaluate(xt: Tensor, p: Parameters, forces: bool) -> tuple[Tensor, Tensor | None]:
    """Energy terms ``[n_terms, B]`` (kJ/mol, rows as :attr:`Parameters.names`) of the
    configurations ``xt: [3, N, B]`` (nm) and, with ``forces``, the gradient
    ``∂U/∂x: [3, N, B]`` (kJ/mol/nm; ``None`` otherwise)."""
    n, b = p.n_atoms, xt.shape[-1]
    r2, r, rinv = pair_table(xt, p.pair_atoms)
    rinv2 = rinv * rinv
    zero = xt.new_zeros(b)
    energies = {}
    w = None  # pair weights W_ij = (∂U/∂r_ij) / r_ij, with forces

    if p.coulomb is not None:
        energies["coulomb"] = (p.coulomb * rinv).sum(0)
        s6 = torch.mul(p.lj_sigma_sq, rinv2)  # (σ/r)²
        s6 = s6.square().mul_(s6)
        u_lj = torch.sub(s6, 1).mul_(s6)  # s¹² - s⁶
        energies["lj"] = (u_lj * p.lj_epsilon4).sum(0)
        if forces:  # W = -(k_e qq / r + 4ε (12 s¹² - 6 s⁶)) / r²
            w = u_lj.mul_(12).add_(s6, alpha=6).mul_(p.lj_epsilon4)
            w.addcmul_(p.coulomb, rinv).mul_(rinv2).neg_()
    if forces and w is None:
        w = torch.zeros_like(r)

    nb, na = p.n_bonds, p.n_angles
    weights = []  # of the bonded pairs
    rows = r.index_select(0, p.bonded_pairs) if nb or na else None
    if nb:
        rb = rows[:nb]
        dr = rb - p.bond_length
        k_dr = p.bond_k * dr
        energies["bond"] = (k_dr * dr).sum(0).mul_(0.5)
        if forces:
            weights.append(k_dr.div_(rb))
    if na:  # θ from the law of cosines; forces on the three distances
        ra = rows[nb:].view(3, na, b)  # r_ab, r_cb, r_ac of the angles a-b-c
        sq = ra.square()
        inv_ab_cb = (ra[0] * ra[1]).reciprocal_()
        cos = (sq[0] + sq[1]).sub_(sq[2]).mul_(inv_ab_cb).mul_(0.5).clamp_(-1, 1)
        dtheta = cos.acos().sub_(p.angle_theta0)
        k_dtheta = p.angle_k * dtheta
        energies["angle"] = (k_dtheta * dtheta).sum(0).mul_(0.5)
        if forces:
            sin = cos.square().neg_().add_(1).sqrt_().clamp_min_(_MIN_SIN)
            g = k_dtheta.div_(sin).mul_(inv_ab_cb).neg_()  # (∂U/∂cos) / (r_ab r_cb)
            # ∂cos/∂r_ab = 1/r_cb - cos/r_ab, ∂cos/∂r_cb = 1/r_ab - cos/r_cb,
            # ∂cos/∂r_ac = -r_ac/(r_ab r_cb); the weights are ∂U/∂r / r
            sides = ra[:2]
            w_sides = sides.flip(0).div_(sides).mul_(cos).neg_().add_(1).mul_(g)
            weights += [w_sides.view(2 * na, b), g.neg_()]
    if weights:
        w.index_add_(0, p.bonded_pairs, torch.cat(weights))

    torsion_grad = None
    if p.torsion_k is not None:
        energies["torsion"], torsion_grad = torsion_terms(xt, p, forces)

    if p.gb is not None:
        energies.update(_gb_terms(r2, r, rinv, p, w))

    names = p.names
    out = torch.stack([energies.get(name, zero) for name in names])
    if not forces:
        return out, None
    # ∂U/∂x_i = Σ_j W_ij (x_i - x_j), W symmetric
    d = xt[:, :, None, :] - xt.index_select(1, p.partners).view(3, n, n - 1, b)
    grad = d.mul_(per_atom(w, p.partner_pairs, n)).sum(2)
    if torsion_grad is not None:
        grad.index_add_(1, p.torsion_atoms, torsion_grad)
    return out, grad


def _gb_terms(
    r2: Tensor, r: Tensor, rinv: Tensor, p: Parameters, w: Tensor | None
) -> dict[str, Tensor]:
    """``gb_polar`` and ``gb_nonpolar`` (kJ/mol, ``[B]``) of the pair tables ``[P, B]``; adds
    their pair weights to ``w`` when it is given (forces)."""
    gb, n, b = p.gb, p.n_atoms, r.shape[-1]
    forces = w is not None
    r_atom = r.index_select(0, p.partner_pairs)  # [N (N - 1), B]: r_ij for the partners of i
    rinv_atom = rinv.index_select(0, p.partner_pairs)
    rinv2_atom = rinv_atom * rinv_atom if forces else None
    term, dterm = obc_integral(r_atom, rinv_atom, rinv2_atom, gb, forces)
    integral = term.view(n, n - 1, b).sum(1)
    born, dborn = obc_born_radii(integral, gb, forces)
    # polar: Σ_{i<j} q_i q_j s(f_ij)/f_ij + ½ Σ_i q_i² s(B_i)/B_i
    # with Still's f = sqrt(r² + B_i B_j exp(-D)), D = r² / (4 B_i B_j)
    inv_born = born.reciprocal()
    pair_inv = (inv_born * 0.5).index_select(0, p.pair_atoms).view(2, -1, b)
    minus_d = pair_inv[0].mul_(pair_inv[1]).mul_(r2).neg_()
    ex = minus_d.clamp_min_(-_MAX_GB_EXPONENT).exp()
    pair_born = born.index_select(0, p.pair_atoms).view(2, -1, b)
    inv_f2 = torch.addcmul(r2, pair_born[0].mul_(pair_born[1]), ex).reciprocal_()
    g, h = _gb_pair_energy(inv_f2.sqrt(), inv_f2, gb.charge_prod, gb.model.screening, forces)
    g_self, h_self = _gb_pair_energy(
        inv_born, inv_born.square(), gb.self_charge, gb.model.screening, forces
    )
    energies = {"gb_polar": g.sum(0).add_(g_self.sum(0))}
    if gb.model.surface_factor:
        ib2 = inv_born.square()
        ace = ib2.square().mul_(ib2).mul_(gb.ace_prefactor)  # prefactor / B⁶
        energies["gb_nonpolar"] = ace.sum(0)
    if not forces:
        return energies
    # ∂U/∂r / r = -h (1 - ¼ exp(-D)); ∂U/∂B_i = -½ Σ_j h exp(-D) (1 + D) B_j - h_ii B_i
    w.sub_(h).addcmul_(h, ex, value=0.25)
    hex_ = ex.mul_(h)
    hb = torch.addcmul(hex_, hex_, minus_d, value=-1)
    partner_born = per_atom(born, p.partners, n)
    du_dborn = per_atom(hb, p.partner_pairs, n).mul_(partner_born).sum(1).mul_(-0.5)
    du_dborn.addcmul_(h_self, born, value=-1)
    if gb.model.surface_factor:
        du_dborn.addcmul_(ace, inv_born, value=-6)
    du_dintegral = du_dborn.mul_(dborn)
    w_atom = dterm.view(n, n - 1, b).mul_(du_dintegral[:, None, :]).view(-1, b).mul_(rinv_atom)
    w.add_(w_atom.index_select(0, p.pair_directions).view(2, -1, b).sum(0))
    return energies


def _gb_pair_energy(
    inv_f: Tensor, inv_f2: Tensor, charge: Tensor, screening: GBScreening, forces: bool
) -> tuple[Tensor, Tensor | None]:
    """``g = charge · s(f) / f`` (``charge`` carries the prefactor without salt, ``-k_e`` with
    salt) and, with ``forces``, ``h = -(dg/df) / f``."""
    if screening.kappa == 0:
        g = torch.mul(charge, inv_f)
        return g, (g * inv_f2 if forces else None)
    salt = inv_f.reciprocal().mul_(-screening.kappa).exp_()  # exp(-κ f)
    s = torch.mul(salt, -1 / screening.solvent_dielectric)
    g = s.add_(1 / screening.solute_dielectric).mul_(charge).mul_(inv_f)
    if not forces:
        return g, None
    # (g - ds/df) / f², ds/df = charge κ exp(-κ f) / ε_solvent
    ds = salt.mul_(charge).mul_(screening.kappa / screening.solvent_dielectric)
    return g, (g - ds).mul_(inv_f2)
