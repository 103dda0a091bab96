"""Pure functions of the Amber energy terms (kJ/mol): bonded terms, LJ + Coulomb, OBC GB/SA.

Positions are ``x: [B, N, 3]`` in nm, parameters are per-term tensors, energies are ``[B]``.
The bonded terms are differentiated by autograd. The pair terms (nonbonded and generalized Born)
are a custom autograd function of the pair distances whose derivatives ``dU/dr`` are written
out analytically, as OpenMM does: several times faster than autograd through the Born radii.

References:
    Onufriev, Bashford, Case (2004), "Exploring protein native states and large-scale
    conformational changes with a modified generalized Born model", Proteins 55, 383.
    Hawkins, Cramer, Truhlar (1996), "Parametrized models of aqueous free energies of solvation
    based on pairwise descreening of solute atomic charges from a dielectric medium",
    J. Phys. Chem. 100, 19824.
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


# --- geometry ----------------------------------------------------------------------------------


def gather_atoms(x: Tensor, idx: Tensor) -> Tensor:
    """``x[:, idx]`` by ``index_select``, whose backward (``index_add``) is much faster on CPU
    than that of advanced indexing (``index_put`` with accumulation)."""
    return x.index_select(1, idx)


def pair_distances(x: Tensor, i: Tensor, j: Tensor) -> Tensor:
    """Distances ``[B, P]`` between atoms ``i[P]`` and ``j[P]`` of ``x: [B, N, 3]``."""
    d = gather_atoms(x, i) - gather_atoms(x, j)
    return (d * d).sum(-1).sqrt()


def angles(x: Tensor, idx: Tensor) -> Tensor:
    """Angles ``[B, P]`` (rad) at the middle atom of the triples ``idx: [P, 3]``."""
    a = gather_atoms(x, idx[:, 0]) - gather_atoms(x, idx[:, 1])
    b = gather_atoms(x, idx[:, 2]) - gather_atoms(x, idx[:, 1])
    # atan2(|a×b|, a·b): a well-conditioned gradient near 0 and π, unlike acos
    return torch.atan2(torch.linalg.cross(a, b).norm(dim=-1), (a * b).sum(-1))


def dihedrals(x: Tensor, idx: Tensor) -> Tensor:
    """IUPAC dihedral angles ``[B, P]`` (rad, in (-π, π]) of the quadruples ``idx: [P, 4]``."""
    b1 = gather_atoms(x, idx[:, 1]) - gather_atoms(x, idx[:, 0])
    b2 = gather_atoms(x, idx[:, 2]) - gather_atoms(x, idx[:, 1])
    b3 = gather_atoms(x, idx[:, 3]) - gather_atoms(x, idx[:, 2])
    n2 = torch.linalg.cross(b2, b3)
    y = (b1 * n2).sum(-1) * (b2 * b2).sum(-1).sqrt()
    return torch.atan2(y, (torch.linalg.cross(b1, b2) * n2).sum(-1))


# --- bonded terms ------------------------------------------------------------------------------


def harmonic_bond_energy(x: Tensor, idx: Tensor, length: Tensor, k: Tensor) -> Tensor:
    """``Σ ½ k (r - r0)²`` over bonds ``idx: [P, 2]``; ``[B]`` kJ/mol."""
    r = pair_distances(x, idx[:, 0], idx[:, 1])
    return (0.5 * k * (r - length) ** 2).sum(-1)


def harmonic_angle_energy(x: Tensor, idx: Tensor, theta0: Tensor, k: Tensor) -> Tensor:
    """``Σ ½ k (θ - θ0)²`` over angles ``idx: [P, 3]``; ``[B]`` kJ/mol."""
    return (0.5 * k * (angles(x, idx) - theta0) ** 2).sum(-1)


def periodic_torsion_energy(
    x: Tensor, idx: Tensor, periodicity: Tensor, phase: Tensor, k: Tensor
) -> Tensor:
    """``Σ k (1 + cos(n φ - φ0))`` over torsions ``idx: [P, 4]``; ``[B]`` kJ/mol."""
    phi = dihedrals(x, idx)
    return (k * (1 + torch.cos(periodicity * phi - phase))).sum(-1)


# --- pair terms, each with its derivative d/dr (None when not asked for) -----------------------


def coulomb_energy(r: Tensor, charge_prod: Tensor, grad: bool) -> tuple[Tensor, Tensor | None]:
    """Per-pair Coulomb energies ``k_e qq / r`` and their ``d/dr``; ``[B, P]`` kJ/mol."""
    u = ONE_4PI_EPS0 * charge_prod / r
    return u, (-u / r if grad else None)


def lennard_jones_energy(
    r: Tensor, sigma: Tensor, epsilon: Tensor, grad: bool
) -> tuple[Tensor, Tensor | None]:
    """Per-pair ``4 ε ((σ/r)¹² - (σ/r)⁶)`` and its ``d/dr``; ``[B, P]`` kJ/mol."""
    s6 = (sigma / r) ** 6
    four_eps = 4 * epsilon
    u = four_eps * (s6 * s6 - s6)
    return u, (four_eps * (6 * s6 - 12 * s6 * s6) / r if grad else None)


def obc_descreening(
    r: Tensor, offset_radius: Tensor, scaled_radius: Tensor, inside_correction: bool, grad: bool
) -> tuple[Tensor, Tensor | None]:
    """HCT/OBC pair integral ``I_ij`` of atom ``j`` seen by atom ``i``, and its ``d/dr``.

    ``I_ij = ½ [1/L - 1/U + ¼ (r - s²/r)(1/U² - 1/L²) + ½ ln(L/U)/r]`` with ``s = sr_j``,
    ``U = r + s``, ``L = max(or_i, |r - s|)``; zero when ``r + s < or_i``. ``inside_correction``
    adds ``1/or_i - 1/L`` when atom ``i`` lies inside atom ``j`` (``or_i < s - r``): OpenMM's
    native ``GBSAOBCForce`` does, the CustomGBForce of ``implicit/obc*.xml`` does not.

    Args:
        r: distances ``[B, P]``; offset_radius: ``or_i: [P]``; scaled_radius: ``sr_j: [P]`` (nm).
    """
    s = scaled_radius
    upper = r + s
    diff = r - s
    use_diff = diff.abs() > offset_radius
    lower = torch.where(use_diff, diff.abs(), offset_radius)
    inv_u, inv_l, inv_r = 1 / upper, 1 / lower, 1 / r
    inv_u2, inv_l2 = inv_u * inv_u, inv_l * inv_l
    s2_r = s * s * inv_r
    a = r - s2_r
    c = inv_u2 - inv_l2
    log_ratio = torch.log(lower * inv_u)
    term = 0.5 * (inv_l - inv_u + 0.25 * a * c + 0.5 * log_ratio * inv_r)
    inside = offset_radius < -diff if inside_correction else None
    if inside is not None:
        term = term + torch.where(inside, 1 / offset_radius - inv_l, 0.0)
    outside = upper < offset_radius
    term = term.masked_fill(outside, 0.0)
    if not grad:
        return term, None
    dlower = torch.where(use_diff, torch.sign(diff), 0.0)  # dL/dr
    dterm = 0.5 * (
        inv_u2
        - dlower * inv_l2
        + 0.25 * (1 + s2_r * inv_r) * c
        + 0.5 * a * (dlower * inv_l2 * inv_l - inv_u2 * inv_u)
        + 0.5 * (dlower * inv_l - inv_u - log_ratio * inv_r) * inv_r
    )
    if inside is not None:
        dterm = dterm + torch.where(inside, dlower * inv_l2, 0.0)
    return term, dterm.masked_fill(outside, 0.0)


def obc_born_radii(
    integral: Tensor,
    offset_radius: Tensor,
    radius: Tensor,
    alpha: float,
    beta: float,
    gamma: float,
    grad: bool,
) -> tuple[Tensor, Tensor | None]:
    """OBC Born radii ``B = 1 / (1/or - tanh(α ψ - β ψ² + γ ψ³) / R)``, ``ψ = I or``, and ``dB/dI``.

    Args:
        integral: ``I = Σ_j I_ij: [B, N]``; offset_radius ``or`` and radius ``R``: ``[N]`` nm.
    """
    psi = integral * offset_radius
    th = torch.tanh(psi * (alpha - psi * (beta - gamma * psi)))
    born = 1 / (1 / offset_radius - th / radius)
    if not grad:
        return born, None
    dphi = alpha - psi * (2 * beta - 3 * gamma * psi)
    return born, born * born * (1 - th * th) * dphi * offset_radius / radius


@dataclass(frozen=True)
class GBScreening:
    """Dielectric screening ``s(f) = -k_e (1/ε_solute - exp(-κ f)/ε_solvent)``, kJ nm/mol/e².

    Its ``over_f(f)`` gives ``g = s(f)/f`` and ``dg/df`` (``None`` when not asked for).
    """

    coulomb_constant: float
    solute_dielectric: float
    solvent_dielectric: float
    kappa: float = 0.0

    def over_f(self, f: Tensor, grad: bool) -> tuple[Tensor, Tensor | None]:
        k, e_in, e_out = self.coulomb_constant, self.solute_dielectric, self.solvent_dielectric
        if self.kappa == 0:
            g = -k * (1 / e_in - 1 / e_out) / f
            return g, (-g / f if grad else None)
        salt = torch.exp(-self.kappa * f) / e_out
        s = -k * (1 / e_in - salt)
        g = s / f
        return g, ((-k * self.kappa * salt - g) / f if grad else None)


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


@dataclass(frozen=True)
class PairParameters:
    """Parameters of the pair terms over the pairs ``i[P] < j[P]`` (all in one dtype).

    Nonbonded: ``charge_prod, sigma, epsilon: [P]`` (exceptions applied, exclusions zero).
    Generalized Born (``model`` not None; the pairs are then all pairs): per atom ``charge,
    radius, offset_radius: [N]``; ``gb_charge_prod = charge[i] * charge[j]: [P]``; per ordered
    pair (``i`` seen by ``j`` then ``j`` by ``i``):
    ``target: [2P]`` (the atom whose integral it adds to), ``target_offset_radius`` and
    ``source_scaled_radius: [2P]``.
    """

    i: Tensor
    j: Tensor
    charge_prod: Tensor
    sigma: Tensor
    epsilon: Tensor
    model: OBCModel | None = None
    charge: Tensor | None = None
    gb_charge_prod: Tensor | None = None
    radius: Tensor | None = None
    offset_radius: Tensor | None = None
    target: Tensor | None = None
    target_offset_radius: Tensor | None = None
    source_scaled_radius: Tensor | None = None

    @property
    def names(self) -> tuple[str, ...]:
        if self.model is None:
            return ("coulomb", "lj")
        if self.model.surface_factor:
            return ("coulomb", "lj", "gb_polar", "gb_nonpolar")
        return ("coulomb", "lj", "gb_polar")


def pair_energies(
    r: Tensor, params: PairParameters, grad: bool
) -> tuple[Tensor, dict[str, Tensor] | None]:
    """Pair-term energies ``[B, n_terms]`` (kJ/mol, in the order of ``params.names``).

    With ``grad``, also what :class:`PairEnergies` needs to map ``dU/dU_k`` to ``dU/dr``:
    direct derivatives ``d<term>/dr: [B, P]``, ``dU_k/dB: [B, N]`` for the GB terms,
    ``dB/dI: [B, N]`` and ``dI/dr: [B, 2P]`` of the ordered pairs.
    """
    u_c, du_c = coulomb_energy(r, params.charge_prod, grad)
    u_lj, du_lj = lennard_jones_energy(r, params.sigma, params.epsilon, grad)
    energies = [u_c.sum(-1), u_lj.sum(-1)]
    derivs = {"coulomb": du_c, "lj": du_lj} if grad else None
    model = params.model
    if model is None:
        return torch.stack(energies, -1), derivs

    i, j, q = params.i, params.j, params.charge
    term, dterm = obc_descreening(
        torch.cat([r, r], dim=1),
        params.target_offset_radius,
        params.source_scaled_radius,
        model.inside_correction,
        grad,
    )
    integral = r.new_zeros(len(r), len(q)).index_add_(1, params.target, term)
    born, dborn = obc_born_radii(
        integral, params.offset_radius, params.radius, model.alpha, model.beta, model.gamma, grad
    )
    # polar: Σ_i ½ q_i² g(B_i) + Σ_{i<j} q_i q_j g(f_ij), g = s(f)/f (Still's f_GB)
    b_i, b_j = born.index_select(1, i), born.index_select(1, j)
    bb = b_i * b_j
    r2 = r * r
    d = r2 / (4 * bb)
    ex = torch.exp(-d)
    f = torch.sqrt(r2 + bb * ex)
    qq = params.gb_charge_prod
    g_pair, dg_pair = model.screening.over_f(f, grad)
    g_self, dg_self = model.screening.over_f(born, grad)
    energies.append((0.5 * q * q * g_self).sum(-1) + (qq * g_pair).sum(-1))
    if model.surface_factor:
        radius = params.radius
        ace = model.surface_factor * (radius + model.probe_radius) ** 2 * (radius / born) ** 6
        energies.append(ace.sum(-1))
    if not grad:
        return torch.stack(energies, -1), None

    dpair_df = qq * dg_pair
    derivs["gb_polar"] = dpair_df * r * (1 - 0.25 * ex) / f
    dpair_dbb = dpair_df * ex * (1 + d) / (2 * f)
    dpolar_dborn = (0.5 * q * q * dg_self).index_add(1, i, dpair_dbb * b_j)
    derivs["gb_polar_dborn"] = dpolar_dborn.index_add_(1, j, dpair_dbb * b_i)
    if model.surface_factor:
        derivs["gb_nonpolar_dborn"] = -6 * ace / born
    derivs["dborn_dintegral"] = dborn
    derivs["dintegral_dr"] = dterm
    return torch.stack(energies, -1), derivs


class PairEnergies(torch.autograd.Function):
    """``r: [B, P] -> U_k: [B, n_terms]`` with analytic backward (first derivatives only)."""

    @staticmethod
    def forward(ctx, r: Tensor, params: PairParameters) -> Tensor:
        grad = ctx.needs_input_grad[0]
        energies, derivs = pair_energies(r, params, grad)
        if grad:
            ctx.params = params
            ctx.keys = list(derivs)
            ctx.save_for_backward(*derivs.values())
        return energies

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor, None]:
        derivs = dict(zip(ctx.keys, ctx.saved_tensors))
        params, w = ctx.params, grad_out.unbind(-1)
        grad_r = w[0][:, None] * derivs["coulomb"] + w[1][:, None] * derivs["lj"]
        if params.model is not None:
            grad_r = grad_r + w[2][:, None] * derivs["gb_polar"]
            du_dborn = w[2][:, None] * derivs["gb_polar_dborn"]
            if "gb_nonpolar_dborn" in derivs:
                du_dborn = du_dborn + w[3][:, None] * derivs["gb_nonpolar_dborn"]
            du_dintegral = du_dborn * derivs["dborn_dintegral"]
            ordered = du_dintegral.index_select(1, params.target) * derivs["dintegral_dr"]
            n_pairs = grad_r.shape[1]
            grad_r = grad_r + ordered[:, :n_pairs] + ordered[:, n_pairs:]
        return grad_r, None
