"""Torch-native Amber force field (bonded, LJ + Coulomb, OBC GB/SA) read off an OpenMM ``System``.

:class:`TorchForceField` reads the parameters once from an OpenMM ``System`` and wires the pure
energy functions of :mod:`boltzflow.energies.ff_terms` together. Supported forces:

* ``HarmonicBondForce``, ``HarmonicAngleForce``, ``PeriodicTorsionForce`` (propers and impropers);
* ``NonbondedForce`` with ``NoCutoff``: LJ + Coulomb over all pairs, each exception replacing
  the default pair with its own ``chargeProd, sigma, epsilon`` (zero ones are exclusions);
* ``GBSAOBCForce`` (OpenMM's native OBC2 with its ACE surface-area term), ``NoCutoff``;
* ``CustomGBForce`` exactly as created by ``implicit/obc1.xml`` or ``implicit/obc2.xml``
  (``openmm.app.internal.customgbforces.GBSAOBC1Force`` / ``GBSAOBC2Force``), ``NoCutoff``,
  with or without the ACE term, any ``kappa``.

``CMMotionRemover`` contributes no energy and is skipped; any other force raises
``NotImplementedError``.
"""

from __future__ import annotations

import math
import re

import numpy as np
import torch
from torch import Tensor

from ..conventions import kT
from .base import Energy, check_event_shape
from .ff_terms import (
    ONE_4PI_EPS0,
    ONE_4PI_EPS0_CUSTOM_GB,
    GBScreening,
    OBCModel,
    PairEnergies,
    PairParameters,
    harmonic_angle_energy,
    harmonic_bond_energy,
    pair_distances,
    periodic_torsion_energy,
)

#: Forces that contribute no potential energy.
SKIPPED_FORCES = ("CMMotionRemover",)


# --- parameters read off an OpenMM System ------------------------------------------------------


def _value(quantity, unit=None) -> float:
    """A plain float from an OpenMM ``Quantity`` (in ``unit``) or a number."""
    if unit is not None and hasattr(quantity, "value_in_unit"):
        return float(quantity.value_in_unit(unit))
    return float(getattr(quantity, "_value", quantity))


def _check_no_cutoff(force, no_cutoff: int) -> None:
    if force.getNonbondedMethod() != no_cutoff:
        raise NotImplementedError(
            f"{type(force).__name__} uses nonbonded method {force.getNonbondedMethod()}; "
            "TorchForceField supports only NoCutoff (build the System with "
            "nonbondedMethod=app.NoCutoff)"
        )


def _read_bonds(force) -> dict[str, np.ndarray]:
    from openmm import unit

    rows = [force.getBondParameters(b) for b in range(force.getNumBonds())]
    return {
        "idx": np.array([[r[0], r[1]] for r in rows], dtype=np.int64).reshape(-1, 2),
        "length": np.array([_value(r[2], unit.nanometer) for r in rows]),
        "k": np.array([_value(r[3], unit.kilojoule_per_mole / unit.nanometer**2) for r in rows]),
    }


def _read_angles(force) -> dict[str, np.ndarray]:
    from openmm import unit

    rows = [force.getAngleParameters(a) for a in range(force.getNumAngles())]
    return {
        "idx": np.array([r[:3] for r in rows], dtype=np.int64).reshape(-1, 3),
        "theta0": np.array([_value(r[3], unit.radian) for r in rows]),
        "k": np.array([_value(r[4], unit.kilojoule_per_mole / unit.radian**2) for r in rows]),
    }


def _read_torsions(force) -> dict[str, np.ndarray]:
    from openmm import unit

    rows = [force.getTorsionParameters(t) for t in range(force.getNumTorsions())]
    return {
        "idx": np.array([r[:4] for r in rows], dtype=np.int64).reshape(-1, 4),
        "periodicity": np.array([float(r[4]) for r in rows]),
        "phase": np.array([_value(r[5], unit.radian) for r in rows]),
        "k": np.array([_value(r[6], unit.kilojoule_per_mole) for r in rows]),
    }


def _read_nonbonded(force, n_atoms: int) -> dict[str, np.ndarray]:
    """Per-pair ``charge_prod, sigma, epsilon: [N, N]`` with exceptions applied (symmetric)."""
    import openmm
    from openmm import unit

    _check_no_cutoff(force, openmm.NonbondedForce.NoCutoff)
    if force.getNumParticleParameterOffsets() or force.getNumExceptionParameterOffsets():
        raise NotImplementedError(
            "NonbondedForce parameter offsets (alchemical global parameters) are not supported"
        )
    rows = [force.getParticleParameters(p) for p in range(n_atoms)]
    q = np.array([_value(r[0], unit.elementary_charge) for r in rows])
    s = np.array([_value(r[1], unit.nanometer) for r in rows])
    e = np.array([_value(r[2], unit.kilojoule_per_mole) for r in rows])
    charge_prod = np.outer(q, q)
    sigma = 0.5 * (s[:, None] + s[None, :])
    epsilon = np.sqrt(np.outer(e, e))
    for k in range(force.getNumExceptions()):
        a, b, qq, sig, eps = force.getExceptionParameters(k)
        for i, j in ((a, b), (b, a)):
            charge_prod[i, j] = _value(qq, unit.elementary_charge**2)
            sigma[i, j] = _value(sig, unit.nanometer)
            epsilon[i, j] = _value(eps, unit.kilojoule_per_mole)
    return {"charge_prod": charge_prod, "sigma": sigma, "epsilon": epsilon}


def _read_native_obc(force, n_atoms: int) -> tuple[OBCModel, dict[str, np.ndarray]]:
    """OpenMM's ``GBSAOBCForce``: OBC2 (α=1, β=0.8, γ=4.85) with the inside-atom correction."""
    import openmm
    from openmm import unit

    _check_no_cutoff(force, openmm.GBSAOBCForce.NoCutoff)
    rows = [force.getParticleParameters(p) for p in range(n_atoms)]
    charge = np.array([_value(r[0], unit.elementary_charge) for r in rows])
    radius = np.array([_value(r[1], unit.nanometer) for r in rows])
    scale = np.array([float(r[2]) for r in rows])
    sa = _value(force.getSurfaceAreaEnergy(), unit.kilojoule_per_mole / unit.nanometer**2)
    model = OBCModel(
        name="GBSAOBCForce (OBC2)",
        alpha=1.0,
        beta=0.8,
        gamma=4.85,
        inside_correction=True,
        screening=GBScreening(
            ONE_4PI_EPS0, force.getSoluteDielectric(), force.getSolventDielectric()
        ),
        surface_factor=4 * math.pi * sa,
    )
    offset_radius = radius - model.offset
    params = {
        "charge": charge,
        "radius": radius,
        "offset_radius": offset_radius,
        "scaled_radius": scale * offset_radius,
    }
    return model, params


_CUSTOM_OBC = {  # class name in openmm.app.internal.customgbforces: (α, β, γ)
    "GBSAOBC1Force": (0.8, 0.0, 2.909125),
    "GBSAOBC2Force": (1.0, 0.8, 4.85),
}


def _read_custom_obc(force, n_atoms: int) -> tuple[OBCModel, dict[str, np.ndarray]]:
    """A ``CustomGBForce`` made by ``implicit/obc1.xml`` or ``obc2.xml``, recognized exactly.

    The expressions are compared with those of a freshly built ``GBSAOBC1Force`` /
    ``GBSAOBC2Force`` with the same dielectrics, salt and surface-area option.
    """
    import openmm
    from openmm.app.internal import customgbforces

    _check_no_cutoff(force, openmm.CustomGBForce.NoCutoff)
    expected = ("charge", "or", "sr")
    names = tuple(
        force.getPerParticleParameterName(k) for k in range(force.getNumPerParticleParameters())
    )
    signature = _custom_gb_signature(force)
    if (
        names == expected
        and force.getNumEnergyTerms() > 0
        and not (force.getNumGlobalParameters() or force.getNumTabulatedFunctions())
    ):
        consts = dict(re.findall(r"(\w+)=([-+0-9.eE]+)", force.getEnergyTermParameters(0)[0]))
        kwargs = {
            "solventDielectric": float(consts.get("solventDielectric", "nan")),
            "soluteDielectric": float(consts.get("soluteDielectric", "nan")),
            "kappa": float(consts.get("kappa", "0")),
        }
        for cls_name, (alpha, beta, gamma) in _CUSTOM_OBC.items():
            for sa in ("ACE", None):
                ref = getattr(customgbforces, cls_name)(SA=sa, **kwargs)
                if _custom_gb_signature(ref) != signature:
                    continue
                rows = np.array([force.getParticleParameters(p) for p in range(n_atoms)])
                model = OBCModel(
                    name=f"CustomGBForce ({cls_name})",
                    alpha=alpha,
                    beta=beta,
                    gamma=gamma,
                    inside_correction=False,
                    screening=GBScreening(
                        ONE_4PI_EPS0_CUSTOM_GB,
                        kwargs["soluteDielectric"],
                        kwargs["solventDielectric"],
                        kwargs["kappa"],
                    ),
                    surface_factor=28.3919551 if sa == "ACE" else 0.0,
                )
                params = {
                    "charge": rows[:, 0],
                    "offset_radius": rows[:, 1],
                    "scaled_radius": rows[:, 2],
                    "radius": rows[:, 1] + model.offset,
                }
                return model, params
    raise NotImplementedError(
        "unrecognized CustomGBForce: TorchForceField supports only the OBC1/OBC2 forces that "
        "openmm.app builds from implicit/obc1.xml and implicit/obc2.xml with NoCutoff "
        "(per-particle parameters charge, or, sr). For OBC2 prefer the native "
        "openmm.GBSAOBCForce."
    )


def _read_forces(system, n_atoms: int) -> dict[str, list]:
    """The parameters of every force of ``system``, by kind; raises on unsupported forces."""
    import openmm

    readers = {  # OpenMM class: (kind, reader)
        openmm.HarmonicBondForce: ("bonds", _read_bonds),
        openmm.HarmonicAngleForce: ("angles", _read_angles),
        openmm.PeriodicTorsionForce: ("torsions", _read_torsions),
        openmm.NonbondedForce: ("nonbonded", lambda f: _read_nonbonded(f, n_atoms)),
        openmm.GBSAOBCForce: ("gb", lambda f: _read_native_obc(f, n_atoms)),
        openmm.CustomGBForce: ("gb", lambda f: _read_custom_obc(f, n_atoms)),
    }
    out: dict[str, list] = {kind: [] for kind, _ in readers.values()} | {"skipped": []}
    for force in system.getForces():
        name = type(force).__name__
        reader = next((r for cls, r in readers.items() if isinstance(force, cls)), None)
        if name in SKIPPED_FORCES:
            out["skipped"].append(name)
        elif reader is not None:
            kind, read = reader
            out[kind].append(read(force))
        else:
            raise NotImplementedError(
                f"TorchForceField does not support {name}; supported: HarmonicBondForce, "
                "HarmonicAngleForce, PeriodicTorsionForce, NonbondedForce (NoCutoff), "
                "GBSAOBCForce, CustomGBForce from implicit/obc1.xml or obc2.xml; skipped: "
                + ", ".join(SKIPPED_FORCES)
            )
    if len(out["nonbonded"]) > 1 or len(out["gb"]) > 1:
        raise NotImplementedError("at most one NonbondedForce and one GB force are supported")
    return out


def _custom_gb_signature(force) -> tuple:
    """Everything that defines a ``CustomGBForce``'s functional form, for exact comparison."""
    return (
        tuple(
            tuple(force.getComputedValueParameters(k)) for k in range(force.getNumComputedValues())
        ),
        tuple(tuple(force.getEnergyTermParameters(k)) for k in range(force.getNumEnergyTerms())),
    )


# --- the module --------------------------------------------------------------------------------


class TorchForceField(Energy):
    r"""Reduced potential energy ``u(x) = U(x) / kT`` of an OpenMM ``System``, in PyTorch.

    The parameters are read once from ``openmm_system`` into buffers (float64; they follow
    ``.to(device)``); every call computes in the dtype of ``x``, on its device. A batch is
    evaluated in chunks of ``chunk_size`` configurations, which bounds the memory of the
    temporaries. The forces of the pair terms (LJ, Coulomb, GB) are analytic, those of the
    bonded terms come from autograd; gradients flow through :meth:`energy` to first order
    only (the pair terms do not support double backward).

    Supported forces are listed in the module docstring; ``CMMotionRemover`` is skipped
    (``self.skipped_forces``); anything else raises ``NotImplementedError``.

    Args:
        openmm_system: an ``openmm.System`` built with ``nonbondedMethod=NoCutoff``.
        temperature: kelvin; ``u = U / kT(temperature)``.
        chunk_size: configurations per chunk; default: pair arrays of 256 kB on CPU
            (cache-sized; 141 float32 configurations of alanine dipeptide) and 32 MB on GPUs.

    Example:
        >>> ff = TorchForceField(system, temperature=300.0)  # doctest: +SKIP
        >>> u = ff.energy(x)            # [B] in kT, x: [B, n_atoms, 3] in nm
        >>> f = ff.force(x)             # [B, n_atoms, 3], -du/dx in kT/nm
        >>> ff.terms(x)["gb_polar"]     # [B] in kJ/mol
    """

    def __init__(self, openmm_system, temperature: float, *, chunk_size: int | None = None):
        n_atoms = openmm_system.getNumParticles()
        super().__init__((n_atoms, 3))
        self.temperature = float(temperature)
        self.kT = kT(self.temperature)
        if any(openmm_system.isVirtualSite(p) for p in range(n_atoms)):
            raise NotImplementedError("virtual sites are not supported by TorchForceField")

        forces = _read_forces(openmm_system, n_atoms)
        bonds, angles_, torsions = forces["bonds"], forces["angles"], forces["torsions"]
        nonbonded, gb = forces["nonbonded"], forces["gb"]
        #: Names of the forces skipped because they contribute no energy.
        self.skipped_forces: list[str] = forces["skipped"]

        self._add_buffers("bond", _concat(bonds, {"idx": (0, 2), "length": (0,), "k": (0,)}))
        self._add_buffers("angle", _concat(angles_, {"idx": (0, 3), "theta0": (0,), "k": (0,)}))
        self._add_buffers(
            "torsion",
            _concat(torsions, {"idx": (0, 4), "periodicity": (0,), "phase": (0,), "k": (0,)}),
        )

        # one pair list for distances: all pairs i < j with GB, else the interacting ones
        i, j = np.triu_indices(n_atoms, k=1)
        self.gb_model: OBCModel | None = gb[0][0] if gb else None
        if nonbonded:
            nb = {key: value[i, j] for key, value in nonbonded[0].items()}
        else:
            nb = {key: np.zeros(len(i)) for key in ("charge_prod", "sigma", "epsilon")}
        if not gb:
            keep = (nb["charge_prod"] != 0) | (nb["epsilon"] != 0)
            i, j, nb = i[keep], j[keep], {key: value[keep] for key, value in nb.items()}
        self._add_buffers("pair", {"i": i, "j": j})
        self._add_buffers("nb", nb)
        if gb:
            params = gb[0][1]
            # ordered pairs (a seen by b) for the descreening sum: both directions of each pair
            target, source = np.concatenate([i, j]), np.concatenate([j, i])
            self._add_buffers(
                "gb",
                {
                    "charge": params["charge"],
                    "radius": params["radius"],
                    "offset_radius": params["offset_radius"],
                    "target": target,
                    "target_offset_radius": params["offset_radius"][target],
                    "source_scaled_radius": params["scaled_radius"][source],
                },
            )
        self._cache: dict = {}
        self._n_ordered_pairs = max(2 * len(i) if gb else len(i), 1)
        self.chunk_size = None if chunk_size is None else int(chunk_size)

    def _add_buffers(self, prefix: str, arrays: dict[str, np.ndarray]) -> None:
        for key, value in arrays.items():
            dtype = torch.long if np.issubdtype(value.dtype, np.integer) else torch.float64
            self.register_buffer(
                f"{prefix}_{key}", torch.as_tensor(value, dtype=dtype), persistent=False
            )

    @property
    def n_atoms(self) -> int:
        return self.event_shape[0]

    def extra_repr(self) -> str:
        gb = self.gb_model.name if self.gb_model else "none"
        return (
            f"n_atoms={self.n_atoms}, temperature={self.temperature}, bonds={len(self.bond_k)}, "
            f"angles={len(self.angle_k)}, torsions={len(self.torsion_k)}, "
            f"pairs={len(self.pair_i)}, gb={gb!r}, skipped={self.skipped_forces}"
        )

    def terms(self, x: Tensor) -> dict[str, Tensor]:
        """Energy terms in kJ/mol, each ``[B]``: ``bond, angle, torsion, coulomb, lj`` and, with
        implicit solvent, ``gb_polar`` and ``gb_nonpolar`` (ACE)."""
        check_event_shape(x, self.event_shape)
        return self._terms(x)

    def energy_kj(self, x: Tensor) -> Tensor:
        """Potential energy ``U: [B]`` in kJ/mol."""
        check_event_shape(x, self.event_shape)
        return torch.cat([self._energy_kj(chunk) for chunk in x.split(self._chunk_size(x))])

    def _energy(self, x: Tensor) -> Tensor:
        # chunks bound the temporaries (a graph, if any, keeps only the saved tensors)
        u = [self._energy_kj(chunk) for chunk in x.split(self._chunk_size(x))]
        return torch.cat(u) / self.kT

    def force(self, x: Tensor) -> Tensor:
        """Force ``-du/dx: [B, n_atoms, 3]`` in kT/nm."""
        return self.energy_and_force(x)[1]

    def energy_and_force(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(u [B], -du/dx [B, n_atoms, 3])`` in kT and kT/nm, in one pass (no graph kept)."""
        check_event_shape(x, self.event_shape)
        energies, forces = [], []
        with torch.enable_grad():
            for chunk in x.detach().split(self._chunk_size(x)):
                chunk.requires_grad_(True)
                u = self._energy_kj(chunk)
                (grad,) = torch.autograd.grad(u.sum(), chunk)
                energies.append(u.detach())
                forces.append(grad)
        return torch.cat(energies) / self.kT, torch.cat(forces).mul_(-1 / self.kT)

    def _chunk_size(self, x: Tensor) -> int:
        if self.chunk_size is not None:
            return self.chunk_size
        # measured: chunks whose pair arrays stay in cache (~256 kB) are fastest on CPU
        budget = 2**18 if x.device.type == "cpu" else 2**25  # bytes per pair array
        return max(16, budget // (x.element_size() * self._n_ordered_pairs))

    def _energy_kj(self, x: Tensor) -> Tensor:
        return sum(self._terms(x).values())

    def _terms(self, x: Tensor) -> dict[str, Tensor]:
        bonded, pair_params = self._cast_parameters(x.dtype, x.device)
        zero = x.new_zeros(len(x))
        out = {"bond": zero, "angle": zero, "torsion": zero}
        if "bond" in bonded:
            out["bond"] = harmonic_bond_energy(x, *bonded["bond"])
        if "angle" in bonded:
            out["angle"] = harmonic_angle_energy(x, *bonded["angle"])
        if "torsion" in bonded:
            out["torsion"] = periodic_torsion_energy(x, *bonded["torsion"])
        r = pair_distances(x, pair_params.i, pair_params.j)
        pair = PairEnergies.apply(r, pair_params)
        out.update(zip(pair_params.names, pair.unbind(-1)))
        return out

    def _cast_parameters(self, dtype: torch.dtype, device: torch.device):
        """Bonded and pair parameters on ``device`` in ``dtype`` (indices stay integers), cached;
        the cache is cleared when the module moves (``.to``)."""
        key = (dtype, device)
        if key not in self._cache:

            def p(t: Tensor) -> Tensor:
                return t.to(device=device, dtype=dtype if t.is_floating_point() else t.dtype)

            fields = {
                "bond": ("idx", "length", "k"),
                "angle": ("idx", "theta0", "k"),
                "torsion": ("idx", "periodicity", "phase", "k"),
            }
            bonded = {
                term: tuple(p(getattr(self, f"{term}_{name}")) for name in names)
                for term, names in fields.items()
                if len(getattr(self, f"{term}_k"))
            }
            self._cache[key] = (bonded, self._pair_parameters(p))
        return self._cache[key]

    def _apply(self, fn, recurse: bool = True):
        self._cache = {}
        return super()._apply(fn, recurse)

    def _pair_parameters(self, p) -> PairParameters:
        nb = {
            "i": p(self.pair_i),
            "j": p(self.pair_j),
            "charge_prod": p(self.nb_charge_prod),
            "sigma": p(self.nb_sigma),
            "epsilon": p(self.nb_epsilon),
        }
        if self.gb_model is None:
            return PairParameters(**nb)
        charge = p(self.gb_charge)
        return PairParameters(
            **nb,
            model=self.gb_model,
            charge=charge,
            gb_charge_prod=charge[nb["i"]] * charge[nb["j"]],
            radius=p(self.gb_radius),
            offset_radius=p(self.gb_offset_radius),
            target=p(self.gb_target),
            target_offset_radius=p(self.gb_target_offset_radius),
            source_scaled_radius=p(self.gb_source_scaled_radius),
        )


def _concat(
    blocks: list[dict[str, np.ndarray]], shapes: dict[str, tuple[int, ...]]
) -> dict[str, np.ndarray]:
    """Concatenate parameter blocks of several forces of one kind (empty arrays if none)."""
    if not blocks:
        return {
            key: np.zeros(shape, dtype=np.int64 if key == "idx" else np.float64)
            for key, shape in shapes.items()
        }
    return {key: np.concatenate([b[key] for b in blocks]) for key in shapes}
