"""The CNF side of the run-directory workflow (``model: cnf``): build, train by flow matching,
rebuild from a checkpoint, and the metrics only a CNF has.

:mod:`boltzflow.pipeline` calls these; everything shared with the coupling flows (run
directory, reference data, ``fit`` with its checkpoints, resume, log and NaN guard, sampling
through ``draw``, molecular evaluation) stays there.

A CNF run's flow is ``Flow(prior, Chain([ContinuousFlow(field), post]))`` where ``post`` maps
the field's units to data units:

* particle systems and molecules: an :class:`~boltzflow.continuous.EGNN` field (E(3)- and
  permutation-equivariant; atoms exchangeable only within a type, from
  :func:`~boltzflow.continuous.particle_context`), the mean-free normal prior and
  ``post = ParticleScale(scale)`` with ``scale`` the RMS centred coordinate of the training data;
* other toys (``double-well``, ``mueller-brown``, …): an :class:`~boltzflow.continuous.MLPField`,
  a standard normal prior and ``post`` = the per-coordinate normalization fitted to the data.

Training: every step draws the *global* batch (indices, prior samples, times and the path's
noise from per-step seeds), pairs it on every rank, and each rank regresses the field on its
share; so a run on N ranks equals one process with the same global batch.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .config import TrainConfig
from .continuous import (
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
    ParticleScale,
    VectorField,
    data_scale,
    integrate,
    particle_context,
)
from .continuous.divergence import Divergence
from .continuous.solvers import Solver
from .distributions import MeanFreeNormal, StandardNormal
from .errors import BoltzflowError
from .flow import Flow
from .geometry import center
from .systems.base import System
from .training import (
    EquivariantOT,
    IndependentPairing,
    LinearPath,
    MinibatchOT,
    Pairing,
    distributed,
    fit,
)
from .transforms import Chain, Inverse, Normalization, Reshape

#: ``kind`` in a CNF run's checkpoint metadata.
KIND = "cnf"
#: Prior samples whose trajectories give ``mean_path_length`` in ``evaluate``.
PATH_LENGTH_SAMPLES = 256


def has_particles(system: System) -> bool:
    """Particle toys and molecules (``[N, 3]`` atoms with a topology) get the EGNN."""
    return system.is_particle_system or getattr(system, "topology", None) is not None


def solver(config: TrainConfig) -> Solver:
    """The configured ODE solver (``solver``, ``solver_steps``)."""
    if config.solver == "dopri5":
        return Dopri5()
    return {"rk4": RK4, "midpoint": Midpoint, "euler": Euler}[config.solver](config.solver_steps)


def divergence(config: TrainConfig) -> Divergence:
    """The configured divergence strategy."""
    return Exact() if config.divergence == "exact" else Hutchinson()


def build_flow(
    system: System, config: TrainConfig, data: Tensor | None = None, *, scale: float = 1.0
) -> Flow:
    """The CNF of ``config`` for ``system``; ``data`` fits the map to data units.

    Without ``data`` the map uses ``scale`` (particle systems) or an identity normalization
    (other toys): a checkpoint's ``state_dict`` then restores the fitted values.
    """
    shape = tuple(system.event_shape)
    ode = dict(solver=solver(config), divergence=divergence(config))
    if has_particles(system):
        context = particle_context(system)
        n, d = shape
        field: VectorField = EGNN(
            d, n_types=context.n_types, hidden=config.cnf_hidden, n_layers=config.cnf_layers
        )
        if data is not None:
            scale = data_scale(data.to(torch.float64))
        post = ParticleScale(scale, n, d)
        return Flow(MeanFreeNormal(n, d), Chain([ContinuousFlow(field, context=context, **ode),
                                                post]), shape)
    field = MLPField(shape, hidden=[config.cnf_hidden] * config.cnf_layers, mean_free=False)
    dim = math.prod(shape)
    norm = Normalization(dim)
    if data is not None:
        norm.fit(data.reshape(len(data), -1).to(torch.float32))
    reshape = Reshape((dim,), shape)
    bijection = Chain([ContinuousFlow(field, **ode), Inverse(reshape), norm, reshape])
    return Flow(StandardNormal(shape), bijection, shape)


def continuous_part(flow: Flow) -> ContinuousFlow:
    """The :class:`ContinuousFlow` of a flow from :func:`build_flow`."""
    return flow.bijection.bijections[0]


def _post(flow: Flow) -> Chain:
    """The fixed map from the field's units to data units."""
    return Chain(list(flow.bijection.bijections)[1:])


def to_field_units(flow: Flow, x: Tensor, *, particles: bool) -> Tensor:
    """Data ``x`` in the units the field is trained in (particles: centred, ÷ scale)."""
    with torch.no_grad():
        return _post(flow).inverse(center(x) if particles else x)[0]


def metadata(system: System, config: TrainConfig, flow: Flow) -> dict[str, Any]:
    """Checkpoint metadata of a CNF run: what :func:`load_flow` checks and rebuilds from."""
    cnf = continuous_part(flow)
    meta: dict[str, Any] = {
        "system": system.id,
        "model": config.model,
        "kind": KIND,
        "field": type(cnf.field).__name__,
        "cnf_hidden": config.cnf_hidden,
        "cnf_layers": config.cnf_layers,
        "event_shape": list(system.event_shape),
    }
    if has_particles(system):
        meta["scale"] = float(_post(flow).bijections[0].scale)
        meta["n_types"] = cnf.context.n_types
    return meta


def load_flow(system: System, config: TrainConfig, state: dict[str, Any], path: Path) -> Flow:
    """Rebuild a trained CNF from its checkpoint ``state`` (metadata checked against config)."""
    meta = state.get("metadata", {})
    for key in ("cnf_hidden", "cnf_layers"):
        if meta.get(key) != getattr(config, key):
            raise BoltzflowError(
                f"checkpoint in {path} has {key}={meta.get(key)!r} but its config says "
                f"{getattr(config, key)!r}; the run directory was altered — retrain"
            )
    flow = build_flow(system, config, scale=float(meta.get("scale", 1.0)))
    try:
        flow.load_state_dict(state["model"])
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise BoltzflowError(f"checkpoint in {path} does not match its config: {first}") from exc
    return flow


def pairing(config: TrainConfig, system: System, context: ParticleContext | None) -> Pairing:
    """The configured pairing; ``auto`` is equivariant OT for particle systems, else OT."""
    name = config.pairing
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
    return EquivariantOT(context.atom_types.cpu(), block_size=config.ot_block_size)


def train(
    system: System,
    config: TrainConfig,
    train_x: Tensor,
    out: Path,
    *,
    device: torch.device,
    dtype: torch.dtype,
    progress: bool,
) -> Flow:
    """Flow matching on ``train_x`` (data units) through :func:`~boltzflow.training.fit`."""
    w = distributed.world()
    flow = build_flow(system, config, train_x).to(dtype)
    particles = has_particles(system)
    x_train = to_field_units(flow, train_x.to(dtype), particles=particles)  # stays on the CPU
    flow = flow.to(device)
    cnf = continuous_part(flow)
    field = cnf.field
    context = cnf.context.to(device) if cnf.context is not None else None
    pair = pairing(config, system, cnf.context)
    path = LinearPath(sigma=config.sigma)
    batch = config.batch_size // w.size
    mine = slice(w.rank * batch, (w.rank + 1) * batch)
    amp = config.amp == "bf16"

    def loss_fn(step: int) -> dict[str, Tensor]:
        # The global batch from per-step seeds, the same on every rank (pairing couples all of
        # its samples); each rank then regresses on its slice.
        gen = torch.Generator().manual_seed(distributed.step_seed(config.seed, step))
        x1 = x_train[torch.randint(len(x_train), (config.batch_size,), generator=gen)]
        x0 = torch.randn(x1.shape, generator=gen, dtype=x1.dtype)
        if particles:
            x0 = center(x0)
        t = torch.rand(config.batch_size, generator=gen, dtype=x1.dtype)
        torch.manual_seed(int(torch.randint(2**62, (), generator=gen)))  # the path's noise
        x0, x1 = pair(x0, x1)
        xt, ut = path(x0, x1, t)
        xt, ut, t = xt[mine].to(device), ut[mine].to(device), t[mine].to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            v = field(t, xt, context)
        loss = (v.to(ut.dtype) - ut).pow(2).flatten(1).sum(-1).mean()
        return {"loss": loss}

    fit(
        flow, loss_fn, steps=config.steps, lr=config.lr, schedule=config.lr_schedule,
        warmup=config.warmup, clip_grad=config.clip_grad, out_dir=out,
        checkpoint_every=config.checkpoint_every, progress=progress,
        metadata=metadata(system, config, flow),
    )
    return flow


class _DataUnits(VectorField):
    """The field's flow seen in data units: ``y = s ⊙ z + m`` moves with ``s ⊙ v(t, z)``."""

    def __init__(self, field: VectorField, scale: Tensor, shift: Tensor):
        super().__init__()
        self.field, self.scale, self.shift = field, scale, shift

    def velocity(self, t: Tensor, y: Tensor, context: ParticleContext | None) -> Tensor:
        return self.scale * self.field(t, (y - self.shift) / self.scale, context)


@torch.no_grad()
def mean_path_length(flow: Flow, *, n: int = PATH_LENGTH_SAMPLES, seed: int = 0) -> float:
    """Mean length ``E ∫₀¹ |dx/dt| dt`` of sampled trajectories, in data units (nm for
    molecules), with the flow's own solver; ``n`` prior samples from ``seed``."""
    cnf = continuous_part(flow)
    post = _post(flow)
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
        _DataUnits(cnf.field, scale, shift), post.forward(z0)[0], (0.0, 1.0), context=context,
        solver=cnf.solver, path_length=True,
    )
    return float(sol.path_length.mean())
