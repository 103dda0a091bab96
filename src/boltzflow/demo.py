"""The molecular demo: MD reference → train → sample → evaluate → report, in one directory.

``boltzflow demo`` (and ``make demo``) runs :func:`run_molecular_demo` with
:data:`~boltzflow.presets.QUICK_ALDP`. Every stage is resumable: the MD dataset (``OUT/md``) is
continued chunk by chunk, training continues from its checkpoint, so rerunning an interrupted
demo picks up where it stopped and a finished one only re-samples and re-evaluates.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .presets import Preset

__all__ = ["DemoResult", "run_molecular_demo"]

MD_DIR = "md"


@dataclass
class DemoResult:
    """What the demo produced.

    Attributes:
        run: the trained :class:`~boltzflow.pipeline.Run` (its directory holds everything).
        metrics: the evaluation metrics (also in ``metrics.json``).
        report: path of ``report.md``.
        figures: PNG files written next to the report.
        seconds: wall-clock seconds per stage (``md``, ``train``, ``sample``, ``evaluate``).
    """

    run: Any
    metrics: dict[str, Any]
    report: Path
    figures: list[Path]
    seconds: dict[str, float] = field(default_factory=dict)


def run_molecular_demo(
    preset: Preset,
    out: str | Path,
    *,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> DemoResult:
    """Simulate the MD reference, train the preset's flow on it, sample, evaluate, report.

    Args:
        preset: MD and training settings (e.g. :data:`~boltzflow.presets.QUICK_ALDP`).
        out: run directory; the MD dataset goes to ``out/md``.
        progress: show progress bars.
        echo: where the stage messages go.

    Returns:
        A :class:`DemoResult`.
    """
    from . import pipeline, systems
    from .md import geometric_temperatures, simulate

    out = Path(out)
    seconds: dict[str, float] = {}
    system = systems.get(preset.system)
    md = dict(preset.md)
    n_replicas, t_max = md.pop("replicas", None), md.pop("t_max", None)
    ladder = None
    if n_replicas:
        ladder = geometric_temperatures(system.temperature, t_max, n_replicas)
    where = f"{n_replicas} replicas {system.temperature:g}-{t_max:g} K" if ladder else "one replica"
    echo(f"[1/4] MD reference: {md['ns']:g} ns of {system.id} ({where}, a frame every "
         f"{md.get('frame_interval_ps', 1.0):g} ps) → {out / MD_DIR} (cached, resumable) …")
    t0 = time.perf_counter()
    dataset = simulate(system, out / MD_DIR, replicas=ladder, progress=progress, **md)
    seconds["md"] = time.perf_counter() - t0

    config = preset.config(data=str(out / MD_DIR))
    echo(f"[2/4] training a {config.n_layers}-layer internal-coordinate spline flow on "
         f"{len(dataset)} frames ({config.steps} steps, preset {preset.name!r}) …")
    t0 = time.perf_counter()
    run = pipeline.train(config, out, progress=progress)
    seconds["train"] = time.perf_counter() - t0

    echo(f"[3/4] sampling {config.n_samples} configurations …")
    t0 = time.perf_counter()
    pipeline.sample(run, config.n_samples, progress=progress)
    seconds["sample"] = time.perf_counter() - t0

    echo("[4/4] reweighting, evaluating and writing the report …")
    t0 = time.perf_counter()
    metrics = pipeline.evaluate(run)
    seconds["evaluate"] = time.perf_counter() - t0
    return DemoResult(
        run=run, metrics=metrics, report=out / "report.md",
        figures=sorted(out.glob("*.png")), seconds=seconds,
    )
