"""``cnf``: a continuous normalizing flow of one system, trained by flow matching.

The flow is ``Flow(prior, Chain([ContinuousFlow(field), post]))`` where ``post`` maps the
field's units to data units:

* particle systems and molecules: an :class:`~boltzflow.continuous.EGNN` field (E(3)- and
  permutation-equivariant; atoms exchangeable only within a type, from
  :func:`~boltzflow.continuous.particle_context`), the mean-free normal prior and
  ``post = ParticleScale(scale)`` with ``scale`` the RMS centred coordinate of the training data;
* other toys (``double-well``, ``mueller-brown``, …): an :class:`~boltzflow.continuous.MLPField`,
  a standard normal prior and ``post`` = the per-coordinate normalization fitted to the data.

Training: every step draws the *global* batch (indices, prior samples, times and the path's
noise from per-step seeds), pairs it on every rank, and each rank regresses the field on its
share; so a run on N ranks equals one process with the same global batch (Klein, Krämer & Noé,
NeurIPS 2023).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..config import RunConfig, Section, check, check_choice
from ..continuous import (
    EGNN,
    RK4,
    ContinuousFlow,
    Dopri5,
    Euler,
    Exact,
    Hutchinson,
    Midpoint,
    MLPField,
    ParticleContext,
    VectorField,
    data_scale,
    integrate,
    particle_context,
    particle_flow,
)
from ..continuous.divergence import Divergence
from ..continuous.solvers import Solver
from ..distributions import MeanFreeNormal, StandardNormal
from ..errors import BoltzflowError
from ..flow import Flow
from ..geometry import center
from ..systems.base import System
from ..systems.molecule import MolecularSystem
from ..training import (
    EquivariantOT,
    IndependentPairing,
    LinearPath,
    MinibatchOT,
    Pairing,
    distributed,
    velocity_loss,
)
from ..transforms import Chain, Inverse, Normalization, Reshape
from .base import ModelKind, TrainingSet

__all__ = ["CNFKind", "CNFParams", "mean_path_length"]

PAIRINGS = ("auto", "equivariant-ot", "ot", "independent")
SOLVERS = ("rk4", "dopri5", "midpoint", "euler")
DIVERGENCES = ("exact", "hutchinson")
AMPS = ("bf16", "none")
#: Prior samples whose trajectories give ``mean_path_length``.
PATH_LENGTH_SAMPLES = 256


@dataclass
class CNFParams(Section):
    """The CNF's section.

    Attributes:
        hidden: width of the vector field (EGNN features / MLP hidden layers).
        n_layers: EGNN layers (or MLP hidden layers) of the vector field.
        pairing: flow-matching pairing of prior and data samples: ``equivariant-ot``
            (permutation among identical atoms + rotation, then minibatch OT), ``ot``
            (minibatch OT), ``independent``, or ``auto`` (equivariant OT for particle systems,
            OT otherwise).
        ot_block_size: equivariant OT assigns within blocks of this many samples (``B · k``
            alignments per step instead of ``B²``); 0: the whole batch.
        sigma: width of the linear conditional path (``σ_min``) in the field's units.
        solver: ODE solver for sampling and likelihoods: ``rk4``, ``midpoint``, ``euler``
            (fixed step) or ``dopri5`` (adaptive, rtol = atol = 1e-5).
        solver_steps: steps of a fixed-step solver.
        divergence: ``exact`` (trace over the mean-free basis) or ``hutchinson`` (one noisy
            probe: fine for a mean NLL, biases importance weights).
        amp: mixed precision of the flow-matching step: ``bf16`` or ``none``.
    """

    NAME = "cnf"
    hidden: int = 64
    n_layers: int = 4
    pairing: str = "auto"
    ot_block_size: int = 64
    sigma: float = 0.01
    solver: str = "rk4"
    solver_steps: int = 20
    divergence: str = "exact"
    amp: str = "bf16"

    def validate(self) -> None:
        """Ranges and choices."""
        self.positive("hidden", "n_layers", "solver_steps")
        self.non_negative("ot_block_size", "sigma")
        for key, allowed in (("pairing", PAIRINGS), ("solver", SOLVERS),
                             ("divergence", DIVERGENCES), ("amp", AMPS)):
            check_choice(getattr(self, key), f"cnf.{key}", allowed)


class CNFKind(ModelKind):
    """An equivariant (or MLP) CNF of one system, trained by flow matching on its data."""

    name = "cnf"
    Params = CNFParams
    sample_defaults = {"batch_size": 128, "n_nll": 1000}
    resumable = ("cnf.solver", "cnf.solver_steps", "cnf.divergence")
    refine_unsupported = (
        "its log q costs an ODE solve with the exact divergence per sample, and AIS/SMC need "
        "log q and its gradient at every MCMC step (hundreds of such solves per sample); "
        "refine a coupling or internal-coordinate model instead"
    )

    def __init__(self, config: RunConfig, module: Flow, system: System, data: Tensor | None):
        super().__init__(config, module, system)
        self.particles = has_particles(system)
        self.context = self.cnf.context
        self.pair = pairing(config.params, system, self.context) if data is not None else None
        self.path = LinearPath(sigma=config.params.sigma)
        self.raw, self.data = data, None

    def to(self, device: torch.device, dtype: torch.dtype) -> ModelKind:
        """The module on ``device``; the training data in field units (kept on the CPU)."""
        super().to(torch.device("cpu"), dtype)
        if self.raw is not None:
            self.data = to_field_units(self.module, self.raw.to(dtype), self.particles)
        return super().to(device, dtype)

    @property
    def cnf(self) -> ContinuousFlow:
        """The flow's :class:`ContinuousFlow`."""
        return self.module.bijection.bijections[0]

    @classmethod
    def check_config(cls, config: RunConfig) -> None:
        """bf16 autocast is for float32 models; the batch is shared out over ranks."""
        check(config.params.amp == "none" or config.train.dtype == "float32", "cnf.amp",
              "'none' with train.dtype float64", config.params.amp)
        size = distributed.world().size
        check(config.train.batch_size % size == 0, "train.batch_size",
              f"divisible by the number of ranks ({size})", config.train.batch_size)

    @classmethod
    def build(cls, config: RunConfig, source: TrainingSet) -> CNFKind:
        """The CNF of ``source.system`` with its map to data units fitted to ``source.data``."""
        if source.data is None:
            raise BoltzflowError("model 'cnf' trains by flow matching and needs reference data")
        flow = build_cnf_flow(source.system, config.params, source.data.to(torch.float64))
        return cls(config, flow, source.system, source.data)

    @classmethod
    def restore(cls, config: RunConfig, metadata: dict[str, Any], system: System | None
                ) -> ModelKind:
        """The architecture with the checkpoint's length scale (weights loaded after)."""
        flow = build_cnf_flow(system, config.params, scale=float(metadata.get("scale", 1.0)))
        return cls(config, flow, system, None)

    def metadata(self) -> dict[str, Any]:
        """The field's type and, for particles, the length scale and number of atom types."""
        meta: dict[str, Any] = {"field": type(self.cnf.field).__name__}
        if self.particles:
            meta["scale"] = float(self.module.bijection.bijections[1].scale)
            meta["n_types"] = self.context.n_types
        return meta

    def batch(self, step: int) -> tuple[Tensor, Tensor, Tensor]:
        """This rank's ``(t, xt, ut)`` of the paired global batch of ``step``."""
        w, size = distributed.world(), self.config.train.batch_size
        gen = torch.Generator().manual_seed(distributed.step_seed(self.config.train.seed, step))
        x1 = self.data[torch.randint(len(self.data), (size,), generator=gen)]
        x0 = torch.randn(x1.shape, generator=gen, dtype=x1.dtype)
        if self.particles:
            x0 = center(x0)
        t = torch.rand(size, generator=gen, dtype=x1.dtype)
        torch.manual_seed(int(torch.randint(2**62, (), generator=gen)))  # the path's noise
        xt, ut = self.path(*self.pair(x0, x1), t)
        share = slice(w.rank * (size // w.size), (w.rank + 1) * (size // w.size))
        return t[share].to(self.device), xt[share].to(self.device), ut[share].to(self.device)

    def loss(self, batch: tuple[Tensor, Tensor, Tensor], step: int) -> dict[str, Tensor]:
        """The flow-matching regression loss."""
        t, xt, ut = batch
        context = self.context.to(self.device) if self.context is not None else None
        amp = self.params.amp == "bf16"
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=amp):
            v = self.cnf.field(t, xt, context)
        return {"loss": velocity_loss(v, ut)}

    def flow_for(self, system: System) -> Flow:
        """The trained flow (of its one system)."""
        return self.module

    def mirror_symmetric(self) -> bool:
        """An EGNN field is E(3)-equivariant: mirror images have the same ``log_q``."""
        return self.particles

    def extra_metrics(self, flow: Flow) -> dict[str, Any]:
        """``mean_path_length`` of sampled trajectories (data units)."""
        return {"mean_path_length": mean_path_length(flow, seed=self.config.train.seed)}

    def describe(self) -> str:
        """Field, pairing, path width and integrator."""
        p = self.params
        return (f"continuous flow, vector field {p.n_layers} × {p.hidden} trained by flow "
                f"matching ({p.pairing} pairing, σ = {p.sigma:g}) for {self.config.train.steps} "
                f"steps; {p.solver} ({p.solver_steps} steps) with the {p.divergence} divergence")


def has_particles(system: System) -> bool:
    """Particle toys and molecules get the EGNN."""
    return system.is_particle_system or isinstance(system, MolecularSystem)


def make_solver(params: CNFParams) -> Solver:
    """The configured ODE solver (``solver``, ``solver_steps``)."""
    if params.solver == "dopri5":
        return Dopri5()
    return {"rk4": RK4, "midpoint": Midpoint, "euler": Euler}[params.solver](params.solver_steps)


def make_divergence(params: CNFParams) -> Divergence:
    """The configured divergence strategy."""
    return Exact() if params.divergence == "exact" else Hutchinson()


def build_cnf_flow(
    system: System, params: CNFParams, data: Tensor | None = None, *, scale: float = 1.0
) -> Flow:
    """The CNF of ``params`` for ``system``; ``data`` fits the map to data units.

    Without ``data`` the map uses ``scale`` (particle systems) or an identity normalization
    (other toys): a checkpoint's ``state_dict`` then restores the fitted values.
    """
    shape = tuple(system.event_shape)
    ode = dict(solver=make_solver(params), divergence=make_divergence(params))
    if has_particles(system):
        context = particle_context(system)
        n, d = shape
        field: VectorField = EGNN(
            d, n_types=context.n_types, hidden=params.hidden, n_layers=params.n_layers
        )
        if data is not None:
            scale = data_scale(data)
        return particle_flow(ContinuousFlow(field, context=context, **ode), n, d, scale)
    field = MLPField(shape, hidden=[params.hidden] * params.n_layers, mean_free=False)
    dim = math.prod(shape)
    norm = Normalization(dim)
    if data is not None:
        norm.fit(data.reshape(len(data), -1).to(torch.float32))
    reshape = Reshape((dim,), shape)
    bijection = Chain([ContinuousFlow(field, **ode), Inverse(reshape), norm, reshape])
    return Flow(StandardNormal(shape), bijection, shape)


def post_map(flow: Flow) -> Chain:
    """The fixed map from the field's units to data units."""
    return Chain(list(flow.bijection.bijections)[1:])


def to_field_units(flow: Flow, x: Tensor, particles: bool) -> Tensor:
    """Data ``x`` in the units the field is trained in (particles: centred, ÷ scale)."""
    like = next(flow.parameters())
    with torch.no_grad():
        return post_map(flow).inverse((center(x) if particles else x).to(like))[0].cpu()


def pairing(params: CNFParams, system: System, context: ParticleContext | None) -> Pairing:
    """The configured pairing; ``auto`` is equivariant OT for particle systems, else OT."""
    name = params.pairing
    if name == "auto":
        name = "equivariant-ot" if has_particles(system) else "ot"
    if name == "independent":
        return IndependentPairing()
    if name == "ot":
        return MinibatchOT()
    if not has_particles(system):
        raise BoltzflowError(
            f"pairing 'equivariant-ot' needs a particle system; {system.id!r} is not one: "
            "use pairing: ot or independent"
        )
    return EquivariantOT(context.atom_types.cpu(), block_size=params.ot_block_size)


class DataUnitsField(VectorField):
    """The field's flow seen in data units: ``y = s ⊙ z + m`` moves with ``s ⊙ v(t, z)``."""

    def __init__(self, field: VectorField, scale: Tensor, shift: Tensor):
        super().__init__()
        self.field, self.scale, self.shift = field, scale, shift

    def velocity(self, t: Tensor, y: Tensor, context: ParticleContext | None) -> Tensor:
        """``s ⊙ v(t, (y − m) / s)``."""
        return self.scale * self.field(t, (y - self.shift) / self.scale, context)


@torch.no_grad()
def mean_path_length(flow: Flow, *, n: int = PATH_LENGTH_SAMPLES, seed: int = 0) -> float:
    """Mean length ``E ∫₀¹ |dx/dt| dt`` of sampled trajectories, in data units (nm for
    molecules), with the flow's own solver; ``n`` prior samples from ``seed``."""
    cnf: ContinuousFlow = flow.bijection.bijections[0]
    post = post_map(flow)
    like = next(flow.parameters())
    gen = torch.Generator().manual_seed(seed)
    z0 = torch.randn(n, *flow.event_shape, generator=gen, dtype=like.dtype).to(like.device)
    if isinstance(flow.base, MeanFreeNormal):
        z0 = center(z0)
    # post is affine and diagonal: y = post(z) = s ⊙ z + m with m = post(0)
    zero = z0.new_zeros(1, *flow.event_shape)
    shift = post.forward(zero)[0]
    scale = post.forward(zero + 1)[0] - shift
    context = cnf.context.to(like.device) if cnf.context is not None else None
    sol = integrate(
        DataUnitsField(cnf.field, scale, shift), post.forward(z0)[0], (0.0, 1.0),
        context=context, solver=cnf.solver, path_length=True,
    )
    return float(sol.path_length.mean())
