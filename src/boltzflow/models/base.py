"""``ModelKind``: the one interface every kind of Boltzmann generator implements.

A kind says how a model is built from a config and its training set, what its training loss on
a batch is, what it stores in a checkpoint, and how it becomes a :class:`~boltzflow.flow.Flow`
for a system. Everything downstream (sampling, reweighting, metrics, reports) sees only that
``Flow`` and the system's energy: :mod:`boltzflow.runs` drives every kind the same way.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..config import RunConfig, Section, check
from ..flow import Flow
from ..systems.base import System

__all__ = ["ModelKind", "TrainingSet"]


@dataclass
class TrainingSet:
    """What a model is built and trained from.

    Attributes:
        system: the system of a single-system kind (``None`` for a transferable kind).
        data: reference configurations ``[n, *event_shape]`` (train split), or ``None`` when
            the model trains on the energy alone.
        dataset: the multi-molecule dataset directory of a transferable kind.
        previous: the metadata of the checkpoint a resumed run continues (``None`` if new).
    """

    system: System | None = None
    data: Tensor | None = None
    dataset: Path | None = None
    previous: dict[str, Any] | None = None


class ModelKind(ABC):
    """One kind of Boltzmann generator, holding its trainable ``module`` and its config.

    Subclasses set :attr:`name`, :attr:`Params` (their config section) and implement
    :meth:`build`, :meth:`restore`, :meth:`batch`, :meth:`loss` and :meth:`flow_for`; register
    them in :data:`boltzflow.models.KINDS`.

    Attributes:
        config: the run's configuration.
        module: every parameter the optimizer trains (what the checkpoint's ``model`` holds).
        system: the system of a single-system kind, ``None`` for a transferable one.
        info: facts about the training for reports (``step``; a transferable kind's
            ``train_sequences`` and ``dataset``).
    """

    #: The kind's name: ``model:`` in the config, ``--model`` on the command line.
    name: ClassVar[str]
    #: The kind's config section (a :class:`~boltzflow.config.Section` dataclass).
    Params: ClassVar[type[Section]]
    #: Whether one model serves many systems (``flow_for`` accepts systems it never saw).
    transferable: ClassVar[bool] = False
    #: Defaults of the ``system`` section that differ for this kind.
    system_defaults: ClassVar[dict[str, Any]] = {}
    #: Defaults of the ``train`` section that differ for this kind.
    train_defaults: ClassVar[dict[str, Any]] = {}
    #: Defaults of the ``sample`` section that differ for this kind.
    sample_defaults: ClassVar[dict[str, Any]] = {"batch_size": 10_000}
    #: Keys (``section.key``) a resumed run may change.
    resumable: ClassVar[tuple[str, ...]] = ()
    #: Why samples of this kind cannot be refined by AIS/SMC (``None``: they can, because
    #: ``log q`` and its gradient cost one network pass).
    refine_unsupported: ClassVar[str | None] = None

    def __init__(self, config: RunConfig, module: nn.Module, system: System | None = None):
        self.config = config
        self.module = module
        self.system = system
        self.info: dict[str, Any] = {}

    @property
    def params(self) -> Any:
        """The kind's own config section."""
        return self.config.params

    @property
    def device(self) -> torch.device:
        """Where the module's parameters live."""
        return next(self.module.parameters()).device

    @classmethod
    def check_config(cls, config: RunConfig) -> None:
        """Checks across sections (e.g. a loss weight against a batch size); none by default."""

    @classmethod
    def needs_data(cls, config: RunConfig) -> bool:
        """Whether training needs reference samples (``False``: energy alone)."""
        return True

    @classmethod
    @abstractmethod
    def build(cls, config: RunConfig, source: TrainingSet) -> ModelKind:
        """A fresh model for ``source`` (its normalization fitted to the data)."""

    @classmethod
    @abstractmethod
    def restore(
        cls, config: RunConfig, metadata: dict[str, Any], system: System | None
    ) -> ModelKind:
        """A model of the architecture in a checkpoint's ``metadata`` (weights loaded after)."""

    def metadata(self) -> dict[str, Any]:
        """Plain data (no tensors) that :meth:`restore` needs besides the config."""
        return {}

    def to(self, device: torch.device, dtype: torch.dtype) -> ModelKind:
        """Move the module; returns ``self``."""
        self.module = self.module.to(device, dtype)
        return self

    @abstractmethod
    def batch(self, step: int) -> Any:
        """This rank's training batch of ``step``, drawn from seeds of ``(seed, step)`` so that
        a resumed or distributed run sees the same global batch."""

    @abstractmethod
    def loss(self, batch: Any, step: int) -> dict[str, Tensor]:
        """The training loss of ``batch`` (key ``loss``) and its parts, all scalars."""

    @abstractmethod
    def flow_for(self, system: System) -> Flow:
        """The model's :class:`Flow` of ``system`` (a transferable kind: any system it can
        encode)."""

    def mirror_symmetric(self) -> bool:
        """Whether ``log_q`` is invariant under ``x → −x`` (E(3)-equivariant models): then
        D-form molecules may be mirrored to L without changing their weights."""
        return False

    def extra_metrics(self, flow: Flow) -> dict[str, Any]:
        """Metrics only this kind has (e.g. a CNF's path length)."""
        return {}

    def describe(self) -> str:
        """One sentence on the model for reports."""
        return f"{self.name} model"

    def energy_of(self, system: System) -> Any:
        """The target energy of ``system`` on the module's device, float64."""
        import copy

        return copy.deepcopy(system.energy).to(self.device, torch.float64)


def check_whole_molecules(config: RunConfig) -> None:
    """A transferable kind's batch holds whole molecules: ``train.batch_size`` must be a
    multiple of the kind's ``frames_per_peptide``."""
    k = config.params.frames_per_peptide
    check(config.train.batch_size % k == 0, "train.batch_size",
          f"a multiple of {config.model}.frames_per_peptide ({k})", config.train.batch_size)
