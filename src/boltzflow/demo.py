"""The demo: MD reference → train → sample → evaluate → report, in one directory.

``boltzflow demo`` (and ``make demo``) runs :func:`run_demo`: on alanine dipeptide,
:func:`run_molecular_demo` with :data:`~boltzflow.presets.QUICK_ALDP`; on a toy, the same
workflow on its built-in reference samples. Every stage is resumable: the MD dataset (``OUT/md``) is
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

__all__ = ["DemoResult", "run_demo", "run_molecular_demo"]

MD_DIR = "md"


@dataclass
class DemoResult:
    """What the demo produced.

    Attributes:
        run: the trained :class:`~boltzflow.runs.Run` (its directory holds everything).
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
    from . import runs, systems
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
    echo(f"[2/4] training a {config.params.n_layers}-layer internal-coordinate spline flow on "
         f"{len(dataset)} frames ({config.train.steps} steps, preset {preset.name!r}) …")
    t0 = time.perf_counter()
    run = runs.train(config, out, progress=progress)
    seconds["train"] = time.perf_counter() - t0

    echo(f"[3/4] sampling {config.sample.n_samples} configurations …")
    t0 = time.perf_counter()
    runs.sample(run, config.sample.n_samples, progress=progress)
    seconds["sample"] = time.perf_counter() - t0

    echo("[4/4] reweighting, evaluating and writing the report …")
    t0 = time.perf_counter()
    metrics = runs.evaluate(run)
    seconds["evaluate"] = time.perf_counter() - t0
    return DemoResult(
        run=run, metrics=metrics, report=out / "report.md",
        figures=sorted(out.glob("*.png")), seconds=seconds,
    )


def run_demo(
    system: str = "aldp-implicit",
    out: str | Path | None = None,
    *,
    quality: bool = False,
    steps: int | None = None,
    ns: float | None = None,
    n_samples: int | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> DemoResult:
    """``boltzflow demo``: the molecular demo on alanine dipeptide (quick or ``quality``
    preset), or the same workflow on a toy ``system``; prints the stages and the headline
    numbers, returns what was produced.

    Raises:
        BoltzflowError: ``quality`` for a toy, or an unknown system.
    """
    from .errors import BoltzflowError
    from .presets import QUALITY_ALDP, QUICK_ALDP
    from .threads import set_threads

    # One torch thread: the demo's small flows train faster on one (measured on 2 idle cores:
    # the quick aldp preset's 3000 steps took 225 s with one thread, 363 s with two sleeping
    # ones); the MD's replicas use the other core in their own processes.
    set_threads(1)
    t_start = time.perf_counter()
    if system != QUICK_ALDP.system:
        if quality:
            raise BoltzflowError(f"--quality is a preset for {QUICK_ALDP.system}, not for {system!r}")
        return run_toy_demo(system, out, steps=steps, n_samples=n_samples, progress=progress,
                            echo=echo)
    preset = (QUALITY_ALDP if quality else QUICK_ALDP).replace(
        md={} if ns is None else {"ns": ns},
        train={} if steps is None else {"steps": steps},
        sample={} if n_samples is None else {"n_samples": n_samples},
    )
    result = run_molecular_demo(preset, out or ("runs/demo-quality" if quality else "runs/demo"),
                                progress=progress, echo=echo)
    m = result.metrics
    echo(f"valid samples {m['fraction_valid']:.1%}; {ess_line(m)}; "
         f"NLL {m.get('nll', float('nan')):.1f} nats")
    if m.get("dF_phi_reweighted") is not None and m.get("dF_phi_md") is not None:
        echo(f"ΔF(φ>0 − φ<0): reweighted {_pm(m, 'dF_phi_reweighted')}, "
             f"MD {_pm(m, 'dF_phi_md')} kT (the MD entered φ>0 {m['md_phi_pos_visits']} times)")
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items())
    echo(f"wall clock {time.perf_counter() - t_start:.0f} s ({stages})")
    _closing_lines(result, echo)
    return result


def ess_line(m: dict[str, Any]) -> str:
    """``ESS 20.1 % (90 % interval 12.0–25.3 % over draws; 4021 effective samples; …)``."""
    interval = ""
    if m.get("ess_low") is not None:
        interval = f"{m['ess_level']:.0%} interval {m['ess_low']:.1%}–{m['ess_high']:.1%}; "
    return (f"ESS {m['ess']:.2%} ({interval}{m['ess_samples']:.0f} effective samples; "
            f"clipped {m['ess_clipped']:.2%}; largest weight {m.get('max_weight') or 0:.3g})")


def _pm(m: dict[str, Any], key: str) -> str:
    """``value ± stderr (method)`` of a metric."""
    return (f"{m[key]:.2f} ± {m[key + '_stderr']:.2f} "
            f"({m.get(key + '_stderr_method', 'bootstrap')})")


def _closing_lines(result: DemoResult, echo: Callable[[str], None]) -> None:
    """The few-samples warning, the figures and the reports; the HTML report last."""
    from .sampling import FEW_EFFECTIVE_SAMPLES, few_effective_samples

    if few_effective_samples(result.metrics.get("ess_samples")):
        echo(f"warning: fewer than {FEW_EFFECTIVE_SAMPLES} effective samples; the reweighted "
             "numbers rest on a handful of samples")
    echo(f"plots:  {', '.join(str(p) for p in result.figures)}")
    echo(f"report: {result.report}")
    echo(f"open in a browser (self-contained): {result.report.with_suffix('.html')}")


def run_toy_demo(
    system: str, out: str | Path | None, *, steps: int | None, n_samples: int | None,
    progress: bool, echo: Callable[[str], None],
) -> DemoResult:
    """Train, sample and evaluate the default model of a toy ``system`` into ``out``."""
    from . import runs
    from .models import config_with

    config = config_with({}, {"system.id": system, "train.steps": steps,
                              "sample.n_samples": n_samples})
    runs.resolve_system(config)  # fail fast on an unknown id
    out = Path(out or Path("runs") / f"demo-{runs.slug(system)}")
    seconds: dict[str, float] = {}
    echo(f"[1/3] training a {config.model} flow on {system} ({config.train.steps} steps) …")
    t0 = time.perf_counter()
    run = runs.train(config, out, progress=progress)
    seconds["train"] = time.perf_counter() - t0
    echo(f"[2/3] sampling {config.sample.n_samples} configurations …")
    t0 = time.perf_counter()
    runs.sample(run, config.sample.n_samples, progress=progress)
    seconds["sample"] = time.perf_counter() - t0
    echo("[3/3] evaluating …")
    t0 = time.perf_counter()
    m = runs.evaluate(run)
    seconds["evaluate"] = time.perf_counter() - t0
    echo(f"{ess_line(m)}, NLL {m.get('nll', float('nan')):.3f}")
    if "dF_exact" in m and m.get("dF_reweighted") is not None:
        a, b = run.system.region_labels
        echo(f"ΔF({b} − {a}): reweighted {_pm(m, 'dF_reweighted')}, exact {m['dF_exact']:.3f} kT")
    result = DemoResult(run=run, metrics=m, report=out / "report.md",
                        figures=sorted(out.glob("*.png")), seconds=seconds)
    _closing_lines(result, echo)
    return result
