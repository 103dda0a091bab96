"""``TBGModel``: a trained transferable field with its scale and vocabulary; the CNF of one molecule."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import BoltzflowError
from .config import TBGConfig
from .encoding import MoleculeEncoding, Vocabulary, encode_topology
from .field import PeptideEGNN

__all__ = ["CHECKPOINT_KIND", "TBGModel", "describe_solver", "load_tbg"]

#: ``metadata["kind"]`` of a transferable-BG checkpoint.
CHECKPOINT_KIND = "tbg"


@dataclass
class TBGModel:
    """A transferable Boltzmann generator: one field for every peptide in its vocabulary.

    Attributes:
        field: the conditioned vector field (works on ``center(x) / scale``).
        scale: global length unit (nm) of the field's coordinates.
        config: the training configuration (its sampling defaults are used).
        metadata: the checkpoint's metadata (train sequences, step, …).
    """

    field: PeptideEGNN
    scale: float
    config: TBGConfig
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def vocabulary(self) -> Vocabulary:
        return self.field.vocabulary

    @property
    def device(self) -> torch.device:
        return next(self.field.parameters()).device

    def encode(self, system) -> MoleculeEncoding:
        """The encoding of a molecular system (raises for tokens outside the vocabulary)."""
        topology = getattr(system, "topology", None)
        if topology is None:
            raise BoltzflowError(f"system {system.id!r} has no topology: not a peptide")
        return encode_topology(topology, self.vocabulary, label=system.id)

    def flow(self, system, *, solver=None, divergence=None):
        """The CNF of ``system`` alone (no padding): a :class:`~boltzflow.Flow` in nm.

        ``Flow(MeanFreeNormal(N, 3), ContinuousFlow(field, solver, divergence) → ×scale)``;
        ``sample_and_log_prob`` gives samples with the exact ``log_q`` on the mean-free
        subspace (default :class:`~boltzflow.continuous.Exact` divergence) and ``log_prob``
        evaluates it for given configurations. Default: the config's ``solver`` (RK4 with
        ``rk4_steps`` steps, Dopri5, or the Gauss–Legendre log-determinant of
        :class:`~boltzflow.transferable.quadrature.QuadratureCNF`); pass ``solver`` (a
        :class:`~boltzflow.continuous.Solver`) to override it.
        """
        from ..continuous import RK4, ContinuousFlow, Dopri5, Exact, ParticleScale
        from ..distributions.normal import MeanFreeNormal
        from ..flow import Flow
        from ..transforms.base import Chain
        from .quadrature import QuadratureCNF

        encoding = self.encode(system)
        context = encoding.context().to(self.device)
        n = encoding.n_atoms
        cfg = self.config
        if solver is None and cfg.solver == "gauss-legendre":
            cnf = QuadratureCNF(
                self.field, context, nodes=cfg.quadrature_nodes, rk4_steps=cfg.rk4_steps,
                divergence=divergence, time_power=cfg.quadrature_power,
            )
        else:
            if solver is None:
                solver = RK4(cfg.rk4_steps) if cfg.solver == "rk4" else Dopri5()
            cnf = ContinuousFlow(self.field, solver, divergence or Exact(), context=context)
        flow = Flow(MeanFreeNormal(n, 3), Chain([cnf, ParticleScale(self.scale, n, 3)]), (n, 3))
        return flow.to(self.device)

    def metadata_for_checkpoint(self) -> dict[str, Any]:
        return {
            **self.metadata,
            "kind": CHECKPOINT_KIND,
            "vocabulary": self.vocabulary.to_dict(),
            "scale": self.scale,
            "hidden": self.field.hidden,
            "n_layers": self.field.n_layers,
            "n_frequencies": self.field.n_frequencies,
            "n_rbf": self.field.n_rbf,
            "rbf_max": self.field.rbf_max,
            "bond_graph": self.field.bond_graph,
            "chiral": self.field.chiral,
            "config": self.config.to_dict(),
        }


def describe_solver(config: TBGConfig) -> str:
    """How ``config`` integrates the flow for sampling and likelihoods, in words."""
    if config.solver == "rk4":
        return f"RK4 × {config.rk4_steps} steps, exact divergence at every stage"
    if config.solver == "dopri5":
        return "adaptive Dopri5 (rtol = atol = 1e-5), exact divergence"
    warp = (
        f", both in s with t = 1 − (1 − s)^{config.quadrature_power:g}"
        if config.quadrature_power != 1 else ""
    )
    return (
        f"RK4 × {config.rk4_steps} steps, log-det by {config.quadrature_nodes}-node "
        f"Gauss–Legendre quadrature of the exact divergence{warp}"
    )


def build_field(config: TBGConfig, vocabulary: Vocabulary | None = None) -> PeptideEGNN:
    """A fresh field sized by ``config`` (seeded by ``config.seed``)."""
    torch.manual_seed(config.seed)
    return PeptideEGNN(
        vocabulary, hidden=config.hidden, n_layers=config.n_layers, n_rbf=config.n_rbf,
        bond_graph=config.bond_graph, chiral=config.chiral,
    )


def load_tbg(path: str | Path, *, device: str | torch.device = "cpu") -> TBGModel:
    """Load a transferable-BG checkpoint (a ``checkpoint.pt`` or its run directory).

    Raises:
        BoltzflowError: no checkpoint, or one of another kind of model.
    """
    from ..training import load_checkpoint

    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    state = load_checkpoint(path)
    meta = state.get("metadata") or {}
    if meta.get("kind") != CHECKPOINT_KIND:
        raise BoltzflowError(
            f"checkpoint {path} holds a {meta.get('kind')!r} model, not a transferable "
            "Boltzmann generator; train one with `boltzflow train --model tbg --dataset DIR`"
        )
    config = TBGConfig.from_dict(meta["config"], source=str(path))
    field_ = PeptideEGNN(
        Vocabulary.from_dict(meta["vocabulary"]),
        hidden=int(meta["hidden"]),
        n_layers=int(meta["n_layers"]),
        n_frequencies=int(meta["n_frequencies"]),
        n_rbf=int(meta.get("n_rbf", 0)),
        rbf_max=float(meta.get("rbf_max", 3.0)),
        bond_graph=bool(meta.get("bond_graph", False)),
        chiral=bool(meta.get("chiral", False)),
    )
    field_.load_state_dict(state["model"])
    scale = float(meta["scale"])
    if not (math.isfinite(scale) and scale > 0):
        raise BoltzflowError(f"checkpoint {path} has an invalid scale {scale!r}")
    field_ = field_.to(device).eval()
    extra = {k: v for k, v in meta.items() if k in ("dataset", "train_sequences")}
    extra["step"] = int(state.get("step", 0))
    return TBGModel(field_, scale, config, extra)
