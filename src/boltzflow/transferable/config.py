"""``TBGConfig``: the settings of a transferable Boltzmann generator run, validated."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any

from ..config import check_known_keys
from ..errors import ConfigError

__all__ = ["TBGConfig"]

SOLVERS = ("rk4", "dopri5", "gauss-legendre")
DEVICES = ("cpu", "cuda")
SCHEDULES = ("cosine", "constant")


@dataclass
class TBGConfig:
    """Everything that defines a transferable-BG training run; written into the run directory.

    Attributes:
        hidden: EGNN feature width.
        n_layers: EGNN message-passing layers.
        n_rbf: Gaussian radial basis functions of the pair distance added to every edge
            network's input (0: only ``d²``, as in the plain EGNN).
        bond_graph: also give every edge network the covalent-graph distance of the pair
            (bonded, 1-3, 1-4, farther) — an extension of the "TBG + full" encoding.
        chiral: an SE(3)- instead of E(3)-equivariant field (a cross-product term in every
            coordinate update, see :class:`~boltzflow.transferable.PeptideEGNN`) that can learn
            L-chirality; its samples get no mirror fix (D or mixed samples are invalid).
        steps: optimizer steps.
        peptides_per_batch: distinct peptides in one batch (padded to the largest).
        frames_per_peptide: MD frames per peptide in one batch; the equivariant-OT minibatch
            assignment runs among these (1: pairs are only aligned, not re-assigned).
        lr: Adam learning rate.
        lr_schedule: ``cosine`` or ``constant``.
        warmup: linear warm-up steps.
        clip_grad: gradient-norm clipping threshold.
        sigma: width of the Gaussian around the straight conditional path (field units).
        minibatch_ot: re-assign prior to data samples among the frames of one peptide.
        bf16: bfloat16 autocast of the field's forward pass in training.
        bucket_size: peptides per padded forward pass, grouped by atom count (less padding
            work on a CPU); 0: the whole batch in one pass (best on a GPU).
        max_frames: at most this many frames per peptide are used (evenly thinned; 0: all).
        seed: seed of initialization, batches, prior draws and times.
        checkpoint_every: steps between checkpoints.
        device: ``cpu`` or ``cuda``.
        solver: how sampling and likelihoods integrate the flow: ``rk4`` (fixed steps, the
            exact divergence at every stage), ``dopri5`` (adaptive, rtol = atol = 1e-5) or
            ``gauss-legendre`` (RK4 trajectory, log-determinant by Gauss–Legendre quadrature of
            the exact divergence at ``quadrature_nodes`` times; see
            :class:`~boltzflow.transferable.quadrature.QuadratureCNF`).
        rk4_steps: RK4 steps for sampling (4 field evaluations each).
        quadrature_nodes: Gauss–Legendre nodes (divergence evaluations) of ``gauss-legendre``.
        quadrature_power: ``gauss-legendre`` integrates in ``s`` with ``t = 1 - (1 - s)^p``, so
            its steps and nodes crowd toward the data end (1: uniform in ``t``); a field trained
            with a small ``sigma`` needs ``p = 2`` with 12 nodes along RK4 × 24 for ``log q``
            to a fraction of a nat.
        sample_batch: samples per chunk when sampling with exact divergence.
    """

    hidden: int = 32
    n_layers: int = 4
    n_rbf: int = 0
    bond_graph: bool = False
    chiral: bool = False
    steps: int = 2000
    peptides_per_batch: int = 16
    frames_per_peptide: int = 8
    lr: float = 5e-3
    lr_schedule: str = "cosine"
    warmup: int = 100
    clip_grad: float = 10.0
    sigma: float = 0.01
    minibatch_ot: bool = True
    bf16: bool = False
    bucket_size: int = 4
    max_frames: int = 0
    seed: int = 0
    checkpoint_every: int = 250
    device: str = "cpu"
    solver: str = "gauss-legendre"
    rk4_steps: int = 16
    quadrature_nodes: int = 8
    quadrature_power: float = 1.0
    sample_batch: int = 50

    def __post_init__(self) -> None:
        self.validate()

    @property
    def batch_size(self) -> int:
        return self.peptides_per_batch * self.frames_per_peptide

    def validate(self) -> None:
        """Check types and ranges; raises :class:`ConfigError` naming the key and the fix."""
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "int":
                _check(type(value) is int, f.name, "an integer", value)
            elif f.type == "float":
                _check(
                    isinstance(value, (int, float)) and not isinstance(value, bool),
                    f.name, "a number", value,
                )
                setattr(self, f.name, float(value))
            elif f.type == "bool":
                _check(isinstance(value, bool), f.name, "true or false", value)
            elif f.type == "str":
                _check(isinstance(value, str), f.name, "a string", value)
        for key in ("hidden", "n_layers", "peptides_per_batch", "frames_per_peptide",
                    "checkpoint_every", "rk4_steps", "sample_batch", "quadrature_nodes"):
            _check(getattr(self, key) > 0, key, "a positive integer", getattr(self, key))
        for key in ("steps", "warmup", "seed", "max_frames", "bucket_size", "n_rbf"):
            _check(getattr(self, key) >= 0, key, "an integer >= 0", getattr(self, key))
        for key in ("lr", "clip_grad"):
            _check(getattr(self, key) > 0, key, "a positive number", getattr(self, key))
        _check(self.sigma >= 0, "sigma", "a number >= 0", self.sigma)
        _check(self.quadrature_power >= 1, "quadrature_power", "a number >= 1",
               self.quadrature_power)
        _check(self.lr_schedule in SCHEDULES, "lr_schedule", " or ".join(SCHEDULES), self.lr_schedule)
        _check(self.device in DEVICES, "device", " or ".join(DEVICES), self.device)
        _check(self.solver in SOLVERS, "solver", " or ".join(SOLVERS), self.solver)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "tbg config") -> TBGConfig:
        """Build from a mapping; unknown keys raise with a did-you-mean suggestion."""
        check_known_keys(cls, data, source, kind="tbg config")
        return cls(**data)

    def replace(self, **changes: Any) -> TBGConfig:
        """A copy with ``changes`` applied (``None`` values are ignored), validated."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check(cond: bool, key: str, allowed: str, value: Any) -> None:
    if not cond:
        raise ConfigError(f"tbg config key {key!r} must be {allowed}, got {value!r}")
