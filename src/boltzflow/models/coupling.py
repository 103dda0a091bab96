"""``coupling``: the classic Boltzmann generator in Cartesian coordinates (toys, particles).

Prior → coupling layers (rational-quadratic splines or RealNVP) → normalization → data space,
trained by maximum likelihood on reference samples, reverse KL on the energy, or both
(Noé et al., Science 2019).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..config import RunConfig, Section, check, check_choice, config_field
from ..distributions import MeanFreeNormal, StandardNormal
from ..errors import BoltzflowError
from ..flow import Flow
from ..systems.base import System
from ..systems.molecule import MolecularSystem
from ..training import combined_loss, distributed
from ..transforms import Chain, Inverse, MeanFreeEmbedding, Normalization, Reshape, coupling_flow
from .base import ModelKind, TrainingSet

__all__ = ["CouplingKind", "CouplingParams", "LikelihoodParams"]

TRANSFORMS = ("spline", "affine")


@dataclass
class LikelihoodParams(Section):
    """A coupling flow trained by likelihood and reverse KL.

    Attributes:
        n_layers: coupling layers (each transforms half the coordinates).
        hidden: hidden layer widths of each conditioner MLP.
        n_bins: spline bins.
        bound: spline interval ``[-bound, bound]`` in the normalized latent space.
        w_nll: weight of maximum likelihood on reference data.
        w_kl: weight of the reverse KL on the energy.
        kl_batch_size: model samples per step for the reverse KL (all ranks together).
        kl_start: first step of the reverse KL; before it, likelihood only (fit the data
            first, then refine on the energy).
        u_high: energies above this (kT) are softened logarithmically in the KL term.
        w_lv: weight of the variance of ``log q + u`` over the data batch
            (:func:`~boltzflow.training.log_weight_variance`; the data's energies are computed
            once), from ``kl_start`` on like the reverse KL.
        lv_samples: model samples per step that join the data in that variance (all ranks
            together; 0: the data alone).
        w_rw: weight of the likelihood of ``kl_batch_size`` model samples per step weighted by
            their normalized importance weights (:func:`~boltzflow.training.reweighted_nll`,
            the forward KL from the model's own samples), from ``kl_start`` on.
    """

    NAME = "coupling"
    n_layers: int = 6
    hidden: list[int] = config_field([64, 64])
    n_bins: int = 8
    bound: float = 5.0
    w_nll: float = 1.0
    w_kl: float = 1.0
    kl_batch_size: int = 256
    kl_start: int = 0
    u_high: float = 1000.0
    w_lv: float = 0.0
    lv_samples: int = 0
    w_rw: float = 0.0

    def validate(self) -> None:
        """Ranges, and a loss that trains something."""
        self.positive("n_bins", "bound", "kl_batch_size", "u_high")
        self.non_negative("w_nll", "w_kl", "kl_start", "w_lv", "lv_samples", "w_rw")
        check(self.n_layers >= 2, f"{self.NAME}.n_layers", "an integer >= 2", self.n_layers)
        check(self.w_nll > 0 or self.w_kl > 0 or self.w_lv > 0 or self.w_rw > 0,
              f"{self.NAME}.w_nll", "> 0 when w_kl, w_lv and w_rw are 0", self.w_nll)
        check(self.kl_start == 0 or self.w_nll > 0, f"{self.NAME}.kl_start",
              "0 when w_nll is 0", self.kl_start)


@dataclass
class CouplingParams(LikelihoodParams):
    """:class:`LikelihoodParams` plus the coupling transform.

    Attributes:
        transform: ``spline`` (rational-quadratic) or ``affine`` (RealNVP).
    """

    transform: str = "spline"

    def validate(self) -> None:
        """The likelihood checks and the transform's name."""
        super().validate()
        check_choice(self.transform, "coupling.transform", TRANSFORMS)


class CouplingKind(ModelKind):
    """A coupling flow on Cartesian coordinates, trained by likelihood and/or reverse KL.

    Particle systems get a mean-free normal prior and couplings on the ``(n - 1) · d``
    mean-free subspace (an orthonormal embedding), so ``log_q`` is a density on that subspace
    like the prior's; other toys a standard normal. With data the normalization is fitted to it
    (per-coordinate mean and standard deviation).
    """

    name = "coupling"
    Params = CouplingParams

    def __init__(self, config: RunConfig, module: Flow, system: System, data: Tensor | None):
        super().__init__(config, module, system)
        self.data = data
        self.energy = system.energy
        self.data_u: Tensor | None = None  # energies of ``data``, computed when first needed

    @classmethod
    def needs_data(cls, config: RunConfig) -> bool:
        """Data for the likelihood and log-weight-variance terms."""
        return config.params.w_nll > 0 or config.params.w_lv > 0

    @classmethod
    def check_config(cls, config: RunConfig) -> None:
        """Batch sizes shared out over ranks."""
        size = distributed.world().size
        for key, value in (("train.batch_size", config.train.batch_size),
                           (f"{cls.name}.kl_batch_size", config.params.kl_batch_size),
                           (f"{cls.name}.lv_samples", config.params.lv_samples)):
            check(value % size == 0, key, f"divisible by the number of ranks ({size})", value)

    @classmethod
    def build(cls, config: RunConfig, source: TrainingSet) -> CouplingKind:
        """The flow for ``source.system``, its normalization fitted to ``source.data``."""
        system = source.system
        if isinstance(system, MolecularSystem):
            raise BoltzflowError(
                f"model 'coupling' is for toys and particle systems; {system.id!r} is a "
                "molecule: use model internal (the internal-coordinate flow)"
            )
        return cls(config, _coupling_flow(system, config.params, source.data), system,
                   source.data)

    @classmethod
    def restore(cls, config: RunConfig, metadata: dict[str, Any], system: System | None
                ) -> ModelKind:
        """The same architecture, unfitted (the checkpoint's state fills it)."""
        return cls.build(config, TrainingSet(system))

    def to(self, device: torch.device, dtype: torch.dtype) -> ModelKind:
        """Module, energy and data on ``device`` in ``dtype``."""
        super().to(device, dtype)
        self.energy = self.system.energy.to(device, dtype)
        if self.data is not None:
            self.data = self.data.to(device, dtype)
        self.data_u = None
        return self

    def batch(self, step: int) -> Tensor | tuple[Tensor, Tensor] | None:
        """This rank's share of ``batch_size`` reference samples (``None`` without data); with
        ``w_lv``, the samples and their energies."""
        return self.batch_of(step, self.config.train.seed)

    def batch_of(self, step: int, seed: int) -> Tensor | tuple[Tensor, Tensor] | None:
        """:meth:`batch` drawn from ``seed`` instead of ``train.seed``."""
        if self.data is None:
            return None
        w, size = distributed.world(), self.config.train.batch_size
        gen = torch.Generator().manual_seed(distributed.step_seed(seed, step))
        idx = torch.randint(len(self.data), (size,), generator=gen)
        share = size // w.size
        idx = idx[w.rank * share : (w.rank + 1) * share].to(self.data.device)
        if self.params.w_lv > 0:
            return self.data[idx], self.data_energies()[idx]
        return self.data[idx]

    def data_energies(self, chunk: int = 1024) -> Tensor:
        """The energies ``u`` (kT) of every data sample, computed once."""
        if self.data_u is None:
            with torch.no_grad():
                u = torch.cat([self.energy.energy(x) for x in self.data.split(chunk)])
            bad = ~torch.isfinite(u)
            if bad.any():
                raise BoltzflowError(
                    f"{int(bad.sum())} of {len(self.data)} training configurations have a "
                    f"non-finite energy; the log-weight variance (w_lv) needs finite ones: "
                    f"check the data, or set {self.name}.w_lv: 0")
            self.data_u = u
        return self.data_u

    def loss(self, batch: Tensor | tuple[Tensor, Tensor] | None, step: int
             ) -> dict[str, Tensor]:
        """``w_nll · NLL(batch) + w_lv · Var(log q + u)(batch) + w_kl · reverse KL`` (the last
        two from ``kl_start`` on)."""
        return self.loss_of(self.module, batch, step, self.config.train.seed)

    def loss_of(self, module: Flow, batch: Tensor | tuple[Tensor, Tensor] | None, step: int,
                seed: int) -> dict[str, Tensor]:
        """:meth:`loss` of ``module``, its model samples drawn from ``seed``."""
        p, w = self.params, distributed.world()
        torch.manual_seed(distributed.step_seed(seed, step, w.rank))
        x, u = batch if isinstance(batch, tuple) else (batch, None)
        w_kl, w_lv, w_rw = (p.w_kl, p.w_lv, p.w_rw) if step >= p.kl_start else (0.0, 0.0, 0.0)
        x_ref, u_ref = ((self.lv_reference(module, x, u) or (None, None)) if w_lv > 0
                        else (None, None))
        parts = combined_loss(
            module, self.energy, x, w_nll=p.w_nll, w_kl=w_kl,
            n_samples=p.kl_batch_size // w.size, u_high=p.u_high, u_data=u, w_lv=w_lv,
            n_lv_samples=p.lv_samples // w.size, x_ref=x_ref, u_ref=u_ref, w_rw=w_rw,
        )
        for key, weight in (("kl", p.w_kl), ("lv", p.w_lv), ("rw", p.w_rw)):  # keep the log's columns
            if weight > 0 and key not in parts:
                parts[key] = torch.full((), float("nan"))
        return parts

    def lv_reference(self, module: Flow, x: Tensor, u: Tensor) -> tuple[Tensor, Tensor] | None:
        """Configurations and energies beyond the data batch ``(x, u)`` that join the
        log-weight variance of ``module`` (``None``: the data alone; the internal kind's ``lv_jitter``)."""
        return None

    def flow_for(self, system: System) -> Flow:
        """The trained flow (of its one system)."""
        return self.module

    def describe(self) -> str:
        """Layers, widths and loss weights."""
        p = self.params
        return (f"{p.n_layers} {p.transform} coupling layers, hidden {p.hidden}; "
                f"{self.config.train.steps} steps, loss = {loss_terms(p)}")


def loss_terms(p: LikelihoodParams) -> str:
    """The loss in words: ``1·NLL + 1·reverse KL``, with ``+ 0.25·Var(log q + u)`` when the
    log-weight variance is on (the text is part of the sample cache's key: runs made before
    ``w_lv`` keep theirs)."""
    text = f"{p.w_nll:g}·NLL + {p.w_kl:g}·reverse KL"
    text += f" + {p.w_lv:g}·Var(log q + u)" if p.w_lv > 0 else ""
    text += f" + {p.w_rw:g}·reweighted NLL of model samples" if p.w_rw > 0 else ""
    jitter = getattr(p, "lv_jitter", 0.0)  # the internal kind's shifted frames
    return text + (f" over the data and its torsions shifted {jitter:g} rad"
                   if p.w_lv > 0 and jitter > 0 else "")


def _coupling_flow(system: System, p: CouplingParams, data: Tensor | None) -> Flow:
    """Prior → couplings → normalization → data space for a toy or particle system."""
    dim = (system.n_particles - 1) * system.spatial_dim if system.is_particle_system else system.dim
    couplings = coupling_flow(
        dim, n_layers=p.n_layers, kind=p.transform, hidden=tuple(p.hidden), n_bins=p.n_bins,
        bound=p.bound,
    )
    norm = Normalization(dim)
    if system.is_particle_system:
        embed = MeanFreeEmbedding(system.n_particles, system.spatial_dim)
        if data is not None:
            norm.fit(embed.inverse(data)[0])
        base = MeanFreeNormal(system.n_particles, system.spatial_dim)
        return Flow(base, Chain([Inverse(embed), couplings, norm, embed]), system.event_shape)
    reshape = Reshape((system.dim,), system.event_shape)
    if data is not None:
        norm.fit(data.reshape(len(data), -1))
    bijection = Chain([Inverse(reshape), couplings, norm, reshape])
    return Flow(StandardNormal(system.event_shape), bijection, system.event_shape)
