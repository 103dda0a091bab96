"""Named settings for the molecular demo: MD reference + training config, quick or quality.

A :class:`Preset` pairs the MD that makes the reference data (``boltzflow simulate`` settings,
parallel tempering so that the rare φ > 0 basin of alanine dipeptide is visited) with the
configuration of the internal-coordinate Boltzmann generator (``model: internal``).

* :data:`QUICK_ALDP` — ``boltzflow demo`` / ``make demo``: about 6 minutes on 2 idle CPU cores.
* :data:`QUALITY_ALDP` — ``boltzflow demo --quality`` and ``bench/aldp.py``: more MD, a bigger
  flow and longer training (about 40 minutes on 2 CPU cores).

Example:
    >>> from boltzflow.presets import QUICK_ALDP
    >>> QUICK_ALDP.config(data="runs/demo/md").system.id
    'aldp-implicit'
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .config import RunConfig

__all__ = ["PRESETS", "QUALITY_ALDP", "QUICK_ALDP", "Preset"]


@dataclass(frozen=True)
class Preset:
    """MD and training settings of a molecular demo run.

    Attributes:
        name: short name, shown in the demo's output.
        system: system id (see ``boltzflow systems``).
        md: keyword arguments of :func:`boltzflow.md.simulate` (``ns``, ``frame_interval_ps``,
            ``equilibration_ps``, ``seed``, ...) plus ``replicas`` (number of parallel-tempering
            replicas, a geometric ladder from the system temperature) and ``t_max`` (kelvin).
        data: ``system`` section entries (``n_data``, ``n_test``).
        train: ``train`` section entries.
        sample: ``sample`` section entries.
        model: the ``internal`` section (the internal-coordinate flow).
    """

    name: str
    system: str
    md: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    sample: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)

    def config(self, **system: Any) -> RunConfig:
        """The validated :class:`RunConfig`; ``system`` adds ``system`` section entries
        (e.g. ``data=`` the MD dataset directory)."""
        from .models import parse_config

        return parse_config({
            "model": "internal", "system": {"id": self.system, **self.data, **system},
            "train": self.train, "sample": self.sample, "internal": self.model,
        }, source=f"preset {self.name!r}")

    def replace(self, **changes: dict[str, Any]) -> Preset:
        """A copy with the given sections' entries updated (merged), e.g.
        ``replace(train={"steps": 10})``."""
        merged = {k: {**getattr(self, k), **v} for k, v in changes.items()}
        return dataclasses.replace(self, **merged)


#: ``boltzflow demo``: 2 ns of parallel tempering (4 replicas, 300-600 K, a frame every 0.05 ps:
#: 40,000 frames at 300 K) and a 6-layer spline flow trained by maximum likelihood for 1,500
#: steps, then by likelihood + reverse KL for 1,500 more. Measured on 2 loaded CPU cores: 12 min
#: (MD 315 s, training 388 s), ESS 20.6 % on 20,000 samples.
QUICK_ALDP = Preset(
    name="quick",
    system="aldp-implicit",
    md={
        "ns": 2.0,
        "replicas": 4,
        "t_max": 600.0,
        "frame_interval_ps": 0.05,
        "equilibration_ps": 20.0,
        "seed": 0,
    },
    data={"n_data": 40000, "n_test": 2000},
    train={"steps": 3000, "lr": 1e-3, "batch_size": 256, "checkpoint_every": 250},
    sample={"n_samples": 20000},
    model={
        "n_layers": 6,
        "hidden": [64, 64],
        "n_bins": 8,
        "kl_start": 1500,
        "w_nll": 1.0,
        "w_kl": 1.0,
        "u_high": 200.0,
        "kl_batch_size": 256,
    },
)

#: ``boltzflow demo --quality`` and ``bench/aldp.py``: 10 ns of parallel tempering (a frame every
#: 0.05 ps: 200,000 frames; ~18 min), an 8-layer × 128 spline flow trained for 6,000 steps
#: (maximum likelihood, then + reverse KL from step 3,000; ~19 min); 100,000 samples. Measured
#: in docs/benchmarks.md: ESS 41 %, ΔF(φ) within 0.03 kT of the MD reference.
QUALITY_ALDP = Preset(
    name="quality",
    system="aldp-implicit",
    md={
        "ns": 10.0,
        "replicas": 4,
        "t_max": 600.0,
        "frame_interval_ps": 0.05,
        "equilibration_ps": 100.0,
        "exchange_interval_ps": 1.0,
        "seed": 0,
    },
    data={"n_data": 200000, "n_test": 10000},
    train={"steps": 6000, "lr": 1e-3, "batch_size": 256, "checkpoint_every": 250},
    sample={"n_samples": 100000},
    model={
        "n_layers": 8,
        "hidden": [128, 128],
        "n_bins": 8,
        "kl_start": 3000,
        "w_nll": 1.0,
        "w_kl": 1.0,
        "u_high": 200.0,
        "kl_batch_size": 256,
    },
)

#: Presets by name.
PRESETS: dict[str, Preset] = {p.name: p for p in (QUICK_ALDP, QUALITY_ALDP)}
