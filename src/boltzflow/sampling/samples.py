"""``Samples``: configurations with model log-density, reduced energy and log weight."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import BoltzflowError
from ..io import write_atomic
from .reweight import log_weights


@dataclass(frozen=True)
class Samples:
    """A batch of model samples.

    Attributes:
        x: configurations ``[B, *event_shape]``.
        log_q: model log density ``[B]``.
        u: reduced target energy ``[B]`` (kT).
        log_w: log importance weight ``-u - log_q`` ``[B]`` (``-inf`` where non-finite).
    """

    x: Tensor
    log_q: Tensor
    u: Tensor
    log_w: Tensor

    @classmethod
    def from_model(cls, x: Tensor, log_q: Tensor, u: Tensor) -> Samples:
        return cls(x=x, log_q=log_q, u=u, log_w=log_weights(u, log_q))

    def __len__(self) -> int:
        return self.x.shape[0]

    def save(self, path: str | Path, *, system_id: str) -> None:
        """Write an ``.npz`` atomically (temp file + rename), tagged with ``system_id``."""
        arrays = {k: getattr(self, k).detach().cpu().numpy() for k in ("x", "log_q", "u", "log_w")}
        write_atomic(path, lambda f: np.savez(f, **arrays, system_id=np.array(system_id)))

    @classmethod
    def load(cls, path: str | Path, *, system_id: str | None = None) -> Samples:
        """Read samples written by :meth:`save`; checks the system id when one is given."""
        path = Path(path)
        if not path.exists():
            raise BoltzflowError(f"no samples at {path}; run `boltzflow sample` first")
        try:
            data = np.load(path)
            stored = str(data["system_id"])
            fields = {k: torch.from_numpy(data[k]) for k in ("x", "log_q", "u", "log_w")}
        except Exception as exc:  # corrupt or foreign file
            raise BoltzflowError(f"cannot read samples file {path}: {exc}") from exc
        if system_id is not None and stored != system_id:
            raise BoltzflowError(
                f"samples in {path} are from system {stored!r}, not {system_id!r}"
            )
        return cls(**fields)
