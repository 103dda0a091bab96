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
import math
from dataclasses import dataclass, field
from typing import Any

from .config import RunConfig

__all__ = ["PRESETS", "QUALITY_ALDP", "QUICK_ALDP", "Preset", "Speeds", "md_split", "plan_molecule",
           "train_for_size"]


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
        refine: how to refine more flow samples after the plain ones (``method``, ``levels``,
            ``steps`` of :class:`~boltzflow.sampling.refine.RefineOptions`, and
            ``n_samples``); empty: no refinement.
    """

    name: str
    system: str
    md: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    sample: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    refine: dict[str, Any] = field(default_factory=dict)

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
#: (MD 315 s, training 388 s), ESS 20.6 % on 20,000 samples. Without the reverse KL (as the
#: bigger one-command flow trains) the median of five draws of 20,000 fell from 37.3 to 18.5 %
#: (7,463 to 3,709 effective; docs/benchmarks.md, v12), so this small flow keeps it.
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
#: 0.05 ps: 200,000 frames; ~18 min), an 8-layer × 128 spline flow trained for 6,000 steps by
#: maximum likelihood (~15 min); 100,000 samples. With the reverse KL from step 3,000, as
#: before v12: ESS 41 %, ΔF(φ) within 0.03 kT of the MD reference; on one 10-ns MD thinned to
#: 200,000 frames, same seed and steps, the median ESS of five draws of 20,000 was 53.4 %
#: (10,681 effective) without the KL and 28.6 % (5,716) with it (docs/benchmarks.md, v12).
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
        "w_kl": 0.0,
        "u_high": 200.0,
        "kl_batch_size": 256,
    },
)

@dataclass(frozen=True)
class Speeds:
    """What a molecule costs on this machine, measured by short probes before planning.

    Attributes:
        md_ns_seconds: wall seconds per ns of MD of one replica (OpenMM Reference).
        step_seconds: wall seconds per training step, averaged over the two phases
            (likelihood only, then with the energy term: half the steps each).
        workers: processes the MD replicas run in at once.
        threads: torch threads the training runs with (the MD is over by then): the count
            whose probe step was fastest.
        step_seconds_by_threads: the probe's step time for each thread count it tried.
        refine_seconds: wall seconds of annealed importance sampling per particle and energy
            evaluation (flow, energy and their gradients); 0: not measured, no refinement
            planned.
    """

    md_ns_seconds: float
    step_seconds: float
    workers: int = 1
    threads: int = 1
    step_seconds_by_threads: dict[int, float] | None = None
    refine_seconds: float = 0.0


#: Shares of a ``--minutes`` budget: MD reference, training; the rest samples and evaluates.
#: On a 43-atom peptide's 25-minute budget, 60 % MD / 25 % training (2.9 ns, 1,700 steps)
#: spread the log-weights over 2.50 and 2.51 nats (two training seeds), 35 / 50 % (1.7 ns,
#: 3,400 steps) over 2.87 and 2.76, 50 / 35 % 2.73, 70 / 15 % 2.68 (``bench/md_fit.py``,
#: docs/benchmarks.md): the flow learns short MD's frames rather than the distribution.
#: MD time the 10-ns cap leaves unused goes to training (alanine dipeptide).
#: The refinement's share (:data:`REFINE_SHARE`) came out of both: 0.60 / 0.25 before.
MD_SHARE, TRAIN_SHARE = 0.55, 0.22
#: Share of a ``--minutes`` budget for refining flow samples by annealed importance sampling
#: (:data:`MOLECULE_REFINE`), beside the plain samples. On the three capped peptides' 30-minute
#: flows the median ESS of draws of 5,000 went to 15-46 % (plain 0.6-12 %) and the weights'
#: tail index under 0.5 in every draw; where the plain weights collapsed (a Pro-Phe flow: 92
#: effective of 100,000) AIS gave 4,461 of 15,000, six times the effective samples per energy
#: evaluation, while on healthy flows plain reweighting is 6-72 times cheaper per evaluation,
#: hence both (docs/benchmarks.md, *Refined by AIS*; ``bench/ess_draws.py --refine ais``).
REFINE_SHARE = 0.08
#: The refinement of the one-command path: AIS through 25 intermediate densities, 2 MALA moves
#: each (10 levels gave 0.8 % on the same flow, 24 × 4 33 %: ``bench/refine.py``).
MOLECULE_REFINE = {"method": "ais", "levels": 25, "steps": 2}
#: Refined particles: at least / at most this many (the share's worth, in whole thousands).
REFINE_MIN, REFINE_MAX = 1000, 20000
#: MD defaults of the one-command path: a frame every 0.02 ps and 4 parallel-tempering replicas
#: up to twice the temperature (at most 600 K). Dense frames cost no MD: on alanine dipeptide
#: 0.2 → 0.05 ps took the ESS from 10 % to 41 % at the same MD length (``docs/aldp.md``); on a
#: 43-atom Trp peptide, whose flow fitted its 0.05-ps frames 1.5-2 nats better than frames of
#: the same MD it never saw, 0.05 → 0.02 ps took that gap from 2.0 to 0.2 nats and the median
#: ESS of five draws of 20,000 from 4.2 to 6.3 % (832 → 1,251 effective; docs/benchmarks.md,
#: ``bench/fresh_frames.py``).
#: Hydrogens repartitioned to 3 amu and a 2-fs step: the same configurations at half the cost of
#: 1 fs (the configurational distribution does not depend on masses; on a 43-atom Trp peptide,
#: 1 ns each, <u> and its spread agree with 1 fs within their errors, docs/md.md).
MOLECULE_MD = {"replicas": 4, "frame_interval_ps": 0.02, "equilibration_ps": 20.0, "seed": 0,
               "timestep_fs": 2.0, "hydrogen_mass_amu": 3.0}
#: At most this many MD frames train the plan's flow (10 ns at 0.02 ps; 43 atoms: 260 MB).
MAX_TRAIN_FRAMES = 500_000
#: The plan's held-out frames: the MD's last this many ps (at most a tenth of the frames).
HELD_OUT_PS = 100.0
#: At most this many training steps per ns of MD; training time the cap leaves goes to MD. The
#: held-out minus training NLL of the plan's flow grew with steps per ns: Trp-Gly 570 / ns
#: (6 ns) 0.3 nats, Pro-Phe 670 / ns 1.7, Trp-Gly 1,090 / ns 3.1, Pro-Phe 1,370 / ns 5.7, where
#: the flow learned its frames and the ESS fell (docs/benchmarks.md, docs/molecules.md).
MAX_STEPS_PER_NS = 700
#: Flow and loss of the one-command path: likelihood, then (above 30 atoms) likelihood + an
#: energy term from half-way; the layers, widths and the energy term come from
#: :func:`flow_for_size`.
MOLECULE_MODEL = {"n_bins": 8, "w_nll": 1.0, "u_high": 200.0, "kl_batch_size": 256}


def flow_for_size(n_atoms: int) -> dict[str, Any]:
    """Layers, conditioner widths and energy term by molecule size.

    Up to 30 atoms the quality preset's 8 × ``[128, 128]`` and maximum likelihood alone: on
    alanine dipeptide's 10-ns MD and 5,000 steps the reverse KL drained the φ > 0 basin
    (0.43 % of samples against MD's 1.86 %) and its weights grew a heavy tail; without it,
    two seeds gave a median ESS of 67.6 and 66.9 % of 20,000 (13,521 and 13,382 effective),
    with it 47.8 % (9,552) and 31.8 % (6,369) (docs/molecules.md);
    above, 6 × ``[128, 128]`` (on a 43-atom Trp peptide 12 layers gave a worse held-out NLL
    and ESS at twice the cost) and a quarter of the log-weight variance of the MD batch
    (``w_lv``) in place of the reverse KL: on the molecules benchmark's three peptides, same
    MD and steps, 3-4 times the effective samples and a lighter weight tail, at the price of
    more clashing samples (docs/benchmarks.md, ``bench/md_fit.py``)."""
    if n_atoms <= 30:
        return {"n_layers": 8, "hidden": [128, 128], "w_kl": 0.0, "w_lv": 0.0}
    return {"n_layers": 6, "hidden": [128, 128], "w_kl": 0.0, "w_lv": 0.25}


def train_for_size(n_atoms: int) -> dict[str, Any]:
    """The ``train`` entries of the one-command path by molecule size: up to 30 atoms 256
    frames per step (the alanine dipeptide recipe); above, 512 frames per step with compiled
    spline kernels (``train.compile``), which make a 512-frame step cost about what a 256-frame
    one costs eager on two threads (on one, 1.4 times): on Trp-Gly's 30-minute MD and steps, the median ESS of five draws of
    20,000 went from 7.4 % (1,479 effective) to 9.4 % and 10.0 % (1,889 and 2,008; compiled and
    eager), pooled 6.20 % to 9.49 and 8.63 % (docs/benchmarks.md, ``bench/md_fit.py``)."""
    if n_atoms <= 30:
        return {"batch_size": 256}
    return {"batch_size": 512, "compile": True}


def energy_term(model: dict[str, Any]) -> str:
    """The energy term of a model section in words: ``reverse KL``, ``0.25 × log-weight
    variance`` or both."""
    terms = [t for w, t in ((model.get("w_kl", 0.0), "reverse KL"),
                            (model.get("w_lv", 0.0), f"{model.get('w_lv', 0.0):g} × log-weight "
                                                     "variance")) if w > 0]
    return " + ".join(terms) or "no energy term"


def plan_molecule(system: str, n_atoms: int, temperature: float, minutes: float,
                  speeds: Speeds, system_section: dict[str, Any] | None = None) -> Preset:
    """The one-command path's settings for a molecule, scaled to a wall-clock budget.

    MD gets :data:`MD_SHARE` of ``minutes`` (parallel tempering with :data:`MOLECULE_MD`, its
    length from ``speeds``, 0.2-10 ns), training :data:`TRAIN_SHARE` plus whatever MD time the
    10-ns cap leaves (steps from ``speeds``, 300-8,000, the energy term of
    :func:`flow_for_size`, if any, from half-way, the batch of :func:`train_for_size`), sampling 20,000
    configurations, and, where ``speeds`` priced it, refining as many more flow samples by AIS
    (:data:`MOLECULE_REFINE`) as :data:`REFINE_SHARE` pays for (1,000-20,000). Where training would
    take more than :data:`MAX_STEPS_PER_NS` steps per ns of MD, the two shares are rebalanced
    so that it takes exactly that many (more MD, fewer steps).

    Args:
        system: system id (or PDB path) of the molecule.
        n_atoms: its size (sets the flow's size, :func:`flow_for_size`).
        temperature: its temperature (kelvin): the replica ladder goes to ``min(2 T, 600 K)``.
        minutes: the wall-clock budget.
        speeds: measured costs (:class:`Speeds`).
        system_section: more ``system`` entries (a PDB file's force field, solvent, temperature).

    Returns:
        A :class:`Preset` named ``"budget-<minutes>min"``.

    Example:
        >>> p = plan_molecule("peptide:ACE-PHE-NME", 32, 300.0, 30, Speeds(130.0, 0.2, 2))
        >>> p.md["ns"], p.train["steps"]
        (3.8, 1900)
    """
    if not minutes > 0:
        raise ValueError(f"minutes must be positive, got {minutes}")
    md = dict(MOLECULE_MD)
    ns_seconds = planned_md_seconds(1.0, speeds, md["replicas"])  # per ns of the whole ladder
    md_seconds, train_seconds = MD_SHARE * minutes * 60, TRAIN_SHARE * minutes * 60
    if train_seconds / speeds.step_seconds > MAX_STEPS_PER_NS * md_seconds / ns_seconds:
        # more steps than the MD can teach: split MD + training so that steps = cap x ns
        both = md_seconds + train_seconds
        md_seconds = both * ns_seconds / (ns_seconds + MAX_STEPS_PER_NS * speeds.step_seconds)
        train_seconds = both - md_seconds
    ns = md_seconds / ns_seconds
    md["ns"] = round(min(10.0, max(0.2, ns)), 1)
    unused = max(0.0, md_seconds - md["ns"] * ns_seconds)
    md["t_max"] = min(2 * temperature, 600.0)
    steps = int((train_seconds + unused) / speeds.step_seconds) // 100 * 100
    steps = max(300, min(8000, int(MAX_STEPS_PER_NS * md["ns"]) // 100 * 100, steps))
    model = {**MOLECULE_MODEL, **flow_for_size(n_atoms), "kl_start": steps // 2}
    refine: dict[str, Any] = {}
    if speeds.refine_seconds > 0:
        per_particle = speeds.refine_seconds * refine_evaluations(MOLECULE_REFINE)
        n = int(REFINE_SHARE * minutes * 60 / per_particle) // 1000 * 1000
        refine = {**MOLECULE_REFINE, "n_samples": max(REFINE_MIN, min(REFINE_MAX, n))}
    return Preset(
        name=f"budget-{minutes:g}min", system=system, md=md,
        data={**md_split(md["ns"], md["frame_interval_ps"]), **(system_section or {})},
        train={"steps": steps, "lr": 1e-3, "checkpoint_every": 250, **train_for_size(n_atoms)},
        sample={"n_samples": 20000}, model=model, refine=refine,
    )


def planned_md_seconds(ns: float, speeds: Speeds, replicas: int) -> float:
    """Wall seconds the plan expects ``ns`` of parallel tempering with ``replicas`` to take at
    the probe's ``speeds`` (replicas run ``speeds.workers`` at a time)."""
    return ns * speeds.md_ns_seconds * -(-replicas // max(1, speeds.workers))


def steps_after_md(steps: int, md_seconds: float, planned_seconds: float,
                   step_seconds: float) -> int:
    """The plan's training steps once its MD has run: where the MD took longer than the probe
    priced it (the machine slowed after the probe), as many fewer steps as the overrun would
    have paid for, in whole hundreds, so that the run keeps its ``--minutes``; never fewer than
    half the plan (at least 100), never more than the plan.

    On a 30-minute Pro-Phe plan whose MD ran 1,100 s where the probe said 998 (2,600 steps of
    0.17 s), the run took 32.4 minutes (docs/benchmarks.md, v11); this rule would have trained
    2,000 steps.

    Example:
        >>> steps_after_md(2600, md_seconds=1100.0, planned_seconds=998.0, step_seconds=0.17)
        2000
        >>> steps_after_md(2600, md_seconds=900.0, planned_seconds=998.0, step_seconds=0.17)
        2600
    """
    overrun = md_seconds - planned_seconds
    if overrun <= 0 or step_seconds <= 0:
        return steps
    cut = math.ceil(overrun / step_seconds / 100) * 100
    floor = max(100, steps // 2 // 100 * 100)
    return max(min(steps, floor), steps - cut)


def refine_evaluations(refine: dict[str, Any]) -> int:
    """Energy (and gradient) evaluations per particle of a refinement section: one per MALA
    move of every level, plus the start and the weights' increments (as
    ``refine.info["energy_evaluations_per_sample"]`` counts them, to within a few)."""
    return refine["levels"] * refine["steps"] + 4


def md_split(ns: float, frame_interval_ps: float) -> dict[str, int]:
    """The ``system`` section's ``n_test`` and ``n_data`` for ``ns`` of MD: the last
    :data:`HELD_OUT_PS` held out (at most a tenth of the frames), the rest trains (at most
    :data:`MAX_TRAIN_FRAMES`, thinned evenly in time beyond).

    Example:
        >>> md_split(4.0, 0.02)
        {'n_data': 195000, 'n_test': 5000}
    """
    frames = round(ns * 1000 / frame_interval_ps)
    n_test = min(int(HELD_OUT_PS / frame_interval_ps), frames // 10)
    return {"n_data": min(frames - n_test, MAX_TRAIN_FRAMES), "n_test": n_test}


#: Presets by name.
PRESETS: dict[str, Preset] = {p.name: p for p in (QUICK_ALDP, QUALITY_ALDP)}
