"""Torch-native Amber force field (bonded, LJ + Coulomb, OBC GB/SA) read off an OpenMM ``System``.

:class:`TorchForceField` reads the parameters once from an OpenMM ``System`` into the layout of
the batched kernel :func:`boltzflow.energies.ff_terms.evaluate` (energies and analytic forces).
Supported forces:

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
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from ..conventions import kT
from .base import Energy, check_event_shape
from .ff_terms import (
    ONE_4PI_EPS0,
    ONE_4PI_EPS0_CUSTOM_GB,
    GBParameters,
    GBScreening,
    OBCModel,
    Parameters,
    evaluate,
    term_names,
)

if TYPE_CHECKING:
    import openmm
    from torch.autograd.function import FunctionCtx

#: Forces that contribute no potential energy.
SKIPPED_FORCES = ("CMMotionRemover",)


# --- parameters read off an OpenMM System ------------------------------------------------------


def _value(quantity: openmm.unit.Quantity | float, unit: openmm.unit.Unit | None = None) -> float:
    """A plain float from an OpenMM ``Quantity`` (in ``unit``) or a number."""
    if unit is not None and hasattr(quantity, "value_in_unit"):
        return float(quantity.value_in_unit(unit))
    return float(getattr(quantity, "_value", quantity))


def _check_no_cutoff(force: openmm.Force, no_cutoff: int) -> None:
    if force.getNonbondedMethod() != no_cutoff:
        raise NotImplementedError(
            f"{type(force).__name__} uses nonbonded method {force.getNonbondedMethod()}; "
            "TorchForceField supports only NoCutoff (build the System with "
            "nonbondedMethod=app.NoCutoff)"
        )


def _read_bonds(force: openmm.HarmonicBondForce) -> dict[str, np.ndarray]:
    from openmm import unit

    rows = [force.getBondParameters(b) for b in range(force.getNumBonds())]
    return {
        "idx": np.array([[r[0], r[1]] for r in rows], dtype=np.int64).reshape(-1, 2),
        "length": np.array([_value(r[2], unit.nanometer) for r in rows]),
        "k": np.array([_value(r[3], unit.kilojoule_per_mole / unit.nanometer**2) for r in rows]),
    }


def _read_angles(force: openmm.HarmonicAngleForce) -> dict[str, np.ndarray]:
    from openmm import unit

    rows = [force.getAngleParameters(a) for a in range(force.getNumAngles())]
    return {
        "idx": np.array([r[:3] for r in rows], dtype=np.int64).reshape(-1, 3),
        "theta0": np.array([_value(r[3], unit.radian) for r in rows]),
        "k": np.array([_value(r[4], unit.kilojoule_per_mole / unit.radian**2) for r in rows]),
    }


def _read_torsions(force: openmm.PeriodicTorsionForce) -> dict[str, np.ndarray]:
    from openmm import unit

    rows = [force.getTorsionParameters(t) for t in range(force.getNumTorsions())]
    return {
        "idx": np.array([r[:4] for r in rows], dtype=np.int64).reshape(-1, 4),
        "periodicity": np.array([float(r[4]) for r in rows]),
        "phase": np.array([_value(r[5], unit.radian) for r in rows]),
        "k": np.array([_value(r[6], unit.kilojoule_per_mole) for r in rows]),
    }


def _read_nonbonded(force: openmm.NonbondedForce, n_atoms: int) -> dict[str, np.ndarray]:
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


def _read_native_obc(force: openmm.GBSAOBCForce, n_atoms: int) -> tuple[OBCModel, dict[str, np.ndarray]]:
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


def _read_custom_obc(force: openmm.CustomGBForce, n_atoms: int) -> tuple[OBCModel, dict[str, np.ndarray]]:
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


def _read_forces(system: openmm.System, n_atoms: int) -> dict[str, list]:
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


def _custom_gb_signature(force: openmm.CustomGBForce) -> tuple:
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
    ``.to(device)``); every call computes in the dtype of ``x``, on its device. Energies and forces
    come from one batched kernel with analytic forces (:func:`~boltzflow.energies.ff_terms.evaluate`;
    no autograd graph); a batch is evaluated in chunks of ``chunk_size`` configurations, which
    keeps the temporaries cache-sized on CPU and bounds the memory on GPUs.

    With ``compile=True`` the kernel goes through ``torch.compile``, which fuses its ~100
    elementwise passes over the pair tables into a few loops (about twice as fast on CPU, see
    ``docs/benchmarks.md``). Each new (system size, dtype, device, energy-only or with forces)
    costs one compilation of 5-40 s on first use (cached on disk by torch afterwards); the batch
    size is a dynamic dimension, so every batch of two or more configurations reuses it (a single
    configuration compiles once more). Where compilation fails (no C++ compiler, an unsupported
    platform), one ``RuntimeWarning`` says so and the module runs eagerly from then on.
    ``ff.compiled`` can also be set after construction. All instances share torch's cache of
    compiled variants of the kernel (8 by default, ``torch._dynamo.config.recompile_limit``);
    past it, torch itself warns and runs further variants eagerly.

    :meth:`energy` is differentiable with respect to ``x`` (to first order: its backward is the
    analytic force, computed in the forward pass when ``x`` requires grad), so a loss through the
    energy backpropagates to whatever produced ``x``.

    Supported forces are listed in the module docstring; ``CMMotionRemover`` is skipped
    (``self.skipped_forces``); anything else raises ``NotImplementedError``.

    Args:
        openmm_system: an ``openmm.System`` built with ``nonbondedMethod=NoCutoff``.
        temperature: kelvin; ``u = U / kT(temperature)``.
        chunk_size: configurations per chunk; default: ``N² × chunk`` values of 512 kB on CPU
            (alanine dipeptide: 270 float32 or 135 float64 configurations; 1 MB when compiled)
            and 64 MB on GPUs.
        compile: evaluate the kernel through ``torch.compile`` (default: eager).

    Example:
        >>> ff = TorchForceField(system, temperature=300.0)  # doctest: +SKIP
        >>> u = ff.energy(x)            # [B] in kT, x: [B, n_atoms, 3] in nm
        >>> f = ff.force(x)             # [B, n_atoms, 3], -du/dx in kT/nm
        >>> ff.terms(x)["gb_polar"]     # [B] in kJ/mol
    """

    def __init__(
        self,
        openmm_system: openmm.System,
        temperature: float,
        *,
        chunk_size: int | None = None,
        compile: bool = False,
    ) -> None:
        n_atoms = openmm_system.getNumParticles()
        super().__init__((n_atoms, 3))
        self.temperature = float(temperature)
        self.kT = kT(self.temperature)
        if any(openmm_system.isVirtualSite(p) for p in range(n_atoms)):
            raise NotImplementedError("virtual sites are not supported by TorchForceField")
        if chunk_size is not None and int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        self.chunk_size = None if chunk_size is None else int(chunk_size)
        #: Whether the kernel runs through ``torch.compile`` (set to False after a failure).
        self.compiled = bool(compile)

        forces = _read_forces(openmm_system, n_atoms)
        #: Names of the forces skipped because they contribute no energy.
        self.skipped_forces: list[str] = forces["skipped"]
        self.gb_model: OBCModel | None = forces["gb"][0][0] if forces["gb"] else None
        self._counts = {"bonds": 0, "angles": 0, "torsions": 0}
        self._add_buffers(_layout(forces, n_atoms, self._counts))
        self._cache: dict = {}

    def _add_buffers(self, arrays: dict[str, np.ndarray]) -> None:
        self._buffer_names = tuple(arrays)
        for key, value in arrays.items():
            dtype = torch.long if np.issubdtype(value.dtype, np.integer) else torch.float64
            self.register_buffer(key, torch.as_tensor(value, dtype=dtype), persistent=False)

    @property
    def n_atoms(self) -> int:
        return self.event_shape[0]

    @property
    def term_names(self) -> tuple[str, ...]:
        """Names of the energy terms (the keys of :meth:`terms`)."""
        return term_names(self.gb_model)

    def extra_repr(self) -> str:
        gb = self.gb_model.name if self.gb_model else "none"
        counts = ", ".join(f"{key}={value}" for key, value in self._counts.items())
        return (
            f"n_atoms={self.n_atoms}, temperature={self.temperature}, {counts}, gb={gb!r}, "
            f"skipped={self.skipped_forces}"
        )

    # --- public API ---

    def terms(self, x: Tensor) -> dict[str, Tensor]:
        """Energy terms in kJ/mol, each ``[B]``: ``bond, angle, torsion, coulomb, lj`` and, with
        implicit solvent, ``gb_polar`` and ``gb_nonpolar`` (ACE). Not differentiable."""
        check_event_shape(x, self.event_shape)
        terms, _ = self._evaluate(x, forces=False)
        return dict(zip(self.term_names, terms.unbind(1)))

    def energy_kj(self, x: Tensor) -> Tensor:
        """Potential energy ``U: [B]`` in kJ/mol (differentiable like :meth:`energy`)."""
        check_event_shape(x, self.event_shape)
        if torch.is_grad_enabled() and x.requires_grad:
            return _EnergyFunction.apply(x, self) * self.kT
        return self._evaluate(x, forces=False)[0].sum(1)

    def _energy(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return _EnergyFunction.apply(x, self)
        return self._evaluate(x, forces=False)[0].sum(1).div_(self.kT)

    def force(self, x: Tensor) -> Tensor:
        """Force ``-du/dx: [B, n_atoms, 3]`` in kT/nm."""
        return self.energy_and_force(x)[1]

    def energy_and_force(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(u [B], -du/dx [B, n_atoms, 3])`` in kT and kT/nm, in one pass (no graph)."""
        check_event_shape(x, self.event_shape)
        terms, grad = self._evaluate(x, forces=True)
        return terms.sum(1).div_(self.kT), grad.mul_(-1 / self.kT)

    # --- evaluation ---

    def _evaluate(self, x: Tensor, forces: bool) -> tuple[Tensor, Tensor | None]:
        """Terms ``[B, n_terms]`` (kJ/mol) and, with ``forces``, ``dU/dx: [B, N, 3]`` (kJ/mol/nm),
        chunk by chunk, in ``x``'s dtype and on its device."""
        x = x.detach()
        if not x.is_floating_point():
            raise TypeError(f"x must be a floating-point tensor, got {x.dtype}")
        params = self._cast_parameters(x.dtype, x.device)
        if x.device.type == "cpu":
            _keep_heap_resident()
        terms = x.new_empty(len(x), len(params.names))
        grad = torch.empty_like(x) if forces else None
        size = self._chunk_size(x)
        for start in range(0, len(x), size):
            chunk = x[start : start + size]
            energies, chunk_grad = self._kernel(chunk.permute(2, 1, 0).contiguous(), params, forces)
            terms[start : start + size] = energies.T
            if forces:
                grad[start : start + size] = chunk_grad.permute(2, 1, 0)
        return terms, grad

    def _kernel(self, xt: Tensor, params: Parameters, forces: bool) -> tuple[Tensor, Tensor | None]:
        """:func:`~.ff_terms.evaluate` of one chunk ``xt: [3, N, B]``, compiled if asked and
        possible; the first failure of ``torch.compile`` warns once and turns it off."""
        with torch.no_grad():  # one grad mode for the compiled graphs; the kernel needs none
            if self.compiled:
                try:
                    return _compiled_evaluate(xt, params, forces)
                except Exception as err:  # noqa: BLE001 - any failure means: run eagerly
                    self.compiled = False
                    reason = (str(err).strip().splitlines() or [""])[0][:200]
                    warnings.warn(
                        f"TorchForceField: torch.compile failed ({type(err).__name__}: {reason}); "
                        "running the eager kernel instead",
                        RuntimeWarning,
                        stacklevel=5,
                    )
            return evaluate(xt, params, forces)

    def _chunk_size(self, x: Tensor) -> int:
        if self.chunk_size is not None:
            return self.chunk_size
        # measured on alanine dipeptide and a 40-atom dipeptide: N² × chunk values of ~512 kB
        # are fastest on CPU, ~1 MB with the compiled kernel (fewer, fused passes)
        if x.device.type == "cpu":
            budget = 2**20 if self.compiled else 2**19  # bytes of N² values
        else:
            budget = 2**26
        return max(1, budget // (x.element_size() * self.n_atoms**2))

    def _cast_parameters(self, dtype: torch.dtype, device: torch.device) -> Parameters:
        """The parameters on ``device`` in ``dtype`` (indices stay integers), cached; the cache
        is cleared when the module moves (``.to``)."""
        key = (dtype, device)
        if key not in self._cache:
            arrays = {}
            for name in self._buffer_names:
                t = getattr(self, name)
                arrays[name] = t.to(device, dtype if t.is_floating_point() else t.dtype)
            gb = None
            if self.gb_model is not None:
                gb = GBParameters(
                    model=self.gb_model,
                    **{k[3:]: v for k, v in arrays.items() if k.startswith("gb_")},
                )
            rest = {k: v for k, v in arrays.items() if not k.startswith("gb_")}
            self._cache[key] = Parameters(
                n_atoms=self.n_atoms,
                n_bonds=self._counts["bonds"],
                n_angles=self._counts["angles"],
                gb=gb,
                **rest,
            )
        return self._cache[key]

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> TorchForceField:
        self._cache = {}
        return super()._apply(fn, recurse)


_HEAP_RESIDENT = False


def _keep_heap_resident() -> None:
    """Keep the temporaries of a chunk in the heap from one chunk to the next (glibc).

    glibc returns the free memory at the top of the heap to the OS once more than its trim
    threshold (twice the largest block freed so far, at first 256 kB) is free, so that every
    chunk page-faults its few MB of temporaries anew: about 1,400 faults and up to a third of
    the time of a chunk of 256 alanine-dipeptide configurations. Freeing one large block once
    raises glibc's dynamic thresholds (mmap 24 MB, trim 48 MB), which is what glibc does anyway
    when a program frees such a block. Harmless with other allocators.
    """
    global _HEAP_RESIDENT
    if not _HEAP_RESIDENT:
        _HEAP_RESIDENT = True
        torch.empty(24 * 2**20, dtype=torch.uint8)  # mmap'ed by glibc, then freed at once


_COMPILED: list[Callable] = []


def _compiled_evaluate(
    xt: Tensor, params: Parameters, forces: bool
) -> tuple[Tensor, Tensor | None]:
    """:func:`~.ff_terms.evaluate` through ``torch.compile`` (created on first use), with the
    batch (last) dimension of ``xt`` dynamic so that one graph serves every chunk size of two or
    more (torch specializes size 1: a second graph)."""
    if not _COMPILED:
        _COMPILED.append(torch.compile(evaluate))
    if xt.shape[-1] > 1:
        torch._dynamo.mark_dynamic(xt, 2)
    return _COMPILED[0](xt, params, forces)


class _EnergyFunction(torch.autograd.Function):
    """``x -> u`` by :class:`TorchForceField`; backward is the analytic ``du/dx`` (first order)."""

    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, ff: TorchForceField) -> Tensor:
        terms, grad = ff._evaluate(x, forces=True)
        ctx.save_for_backward(grad.div_(ff.kT))
        return terms.sum(1).div_(ff.kT)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: FunctionCtx, grad_u: Tensor) -> tuple[Tensor, None]:
        (grad,) = ctx.saved_tensors
        return grad_u[:, None, None] * grad, None


def _layout(forces: dict[str, list], n: int, counts: dict[str, int]) -> dict[str, np.ndarray]:
    """The parameters read off the System, as the arrays of :class:`~.ff_terms.Parameters`
    (per-term columns ``[n, 1]``, pair columns ``[P, 1]`` over the pairs ``i < j``); fills
    ``counts``."""
    first, second = np.triu_indices(n, k=1)
    pair_of = np.zeros((n, n), dtype=np.int64)
    pair_of[first, second] = pair_of[second, first] = np.arange(len(first))
    own, partners = np.nonzero(1 - np.eye(n, dtype=np.int64))  # i-major, j ≠ i
    row_of = np.zeros((n, n), dtype=np.int64)
    row_of[own, partners] = np.arange(len(own))
    out: dict[str, np.ndarray] = {
        "pair_atoms": np.concatenate([first, second]),
        "partners": partners,
        "partner_pairs": pair_of[own, partners],
        "pair_directions": np.concatenate([row_of[first, second], row_of[second, first]]),
    }

    def column(values: Sequence[float] | np.ndarray) -> np.ndarray:
        return np.asarray(values, dtype=np.float64).reshape(-1, 1)

    bonds = _concat(forces["bonds"], {"idx": (0, 2), "length": (0,), "k": (0,)})
    angles = _concat(forces["angles"], {"idx": (0, 3), "theta0": (0,), "k": (0,)})
    torsions = _concat(
        forces["torsions"], {"idx": (0, 4), "periodicity": (0,), "phase": (0,), "k": (0,)}
    )
    counts |= {"bonds": len(bonds["k"]), "angles": len(angles["k"]), "torsions": len(torsions["k"])}
    i, j = bonds["idx"].T
    a, b, c = angles["idx"].T
    if len(i) or len(a):
        out["bonded_pairs"] = np.concatenate([pair_of[i, j], pair_of[a, b], pair_of[c, b],
                                              pair_of[a, c]])
    if len(i):
        out |= {"bond_length": column(bonds["length"]), "bond_k": column(bonds["k"])}
    if len(a):
        out |= {"angle_theta0": column(angles["theta0"]), "angle_k": column(angles["k"])}
    if len(torsions["k"]):
        quads, quad_of_term = np.unique(torsions["idx"], axis=0, return_inverse=True)
        out["torsion_atoms"] = quads.T.reshape(-1)
        if len(quads) < len(quad_of_term):
            out["torsion_quad"] = quad_of_term.reshape(-1)
        for key in ("periodicity", "phase", "k"):
            out[f"torsion_{key}"] = column(torsions[key])
        out["torsion_minus_kn"] = column(-torsions["k"] * torsions["periodicity"])
        out["torsion_k_sum"] = np.array(torsions["k"].sum())

    if forces["nonbonded"]:
        nb = forces["nonbonded"][0]
        out["coulomb"] = column(ONE_4PI_EPS0 * nb["charge_prod"][first, second])
        out["lj_sigma_sq"] = column(nb["sigma"][first, second] ** 2)
        out["lj_epsilon4"] = column(4 * nb["epsilon"][first, second])
    if forces["gb"]:
        model, params = forces["gb"][0]
        q, radius, offset = params["charge"], params["radius"], params["offset_radius"]
        scaled = params["scaled_radius"]
        screening = model.screening
        prefactor = screening.prefactor if screening.kappa == 0 else -screening.coulomb_constant
        out |= {  # integrals: atom i (Born radius) descreened by its partner j
            "gb_scaled_radius": column(scaled[partners]),
            "gb_scaled_radius_sq": column(scaled[partners] ** 2),
            "gb_offset_radius": column(offset[own]),
            "gb_inv_offset_radius": column(1 / offset[own]),
            "gb_charge_prod": column(prefactor * q[first] * q[second]),
            "gb_self_charge": column(0.5 * prefactor * q**2),
            "gb_atom_offset_radius": column(offset),
            "gb_atom_inv_offset_radius": column(1 / offset),
            "gb_atom_radius": column(radius),
            "gb_atom_radius_ratio": column(offset / radius),
            "gb_ace_prefactor": column(
                model.surface_factor * (radius + model.probe_radius) ** 2 * radius**6
            ),
        }
    return out


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
