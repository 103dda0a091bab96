"""The demo: MD reference → train → sample → evaluate → report, in one directory.

``boltzflow demo`` (and ``make demo``) runs :func:`run_demo`: on alanine dipeptide,
:func:`run_molecular_demo` with :data:`~boltzflow.presets.QUICK_ALDP`; on any other molecule (a
PDB file, ``peptide:SEQ``, ``dipeptide:XY``) :func:`run_molecule`, which first measures what MD
and training cost for it and plans a budget (``--minutes``); on a toy, the same workflow on its
built-in reference samples. Every stage is resumable: the MD dataset (``OUT/md``) is
continued chunk by chunk, training continues from its checkpoint, so rerunning an interrupted
demo picks up where it stopped and a finished one only re-samples and re-evaluates.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .presets import Preset

__all__ = ["DEFAULT_MINUTES", "DemoResult", "measure_speeds", "run_demo", "run_molecular_demo",
           "run_molecule", "run_zero_shot"]

MD_DIR = "md"
#: The plan of a molecule run (settings and the measured speeds), reused when it resumes.
PLAN_NAME = "plan.json"
#: Default wall-clock budget of ``boltzflow demo --system MOLECULE`` (minutes). On the 43-atom
#: Ala-Tyr peptide 25 minutes gave a median ESS of 9.7 % over five draws of 20,000 (1,943
#: effective), 30 minutes 12.5 % (2,499; more MD and steps; docs/benchmarks.md,
#: ``bench/molecules.py``).
DEFAULT_MINUTES = 30.0
#: Probe steps per training phase (likelihood only, then with the energy term), and timed
#: rounds of them per thread count.
PROBE_PHASE_STEPS, PROBE_ROUNDS = 4, 2
#: The dipeptide the alanine-dipeptide demo samples zero-shot with the pretrained transferable
#: model (held out of its training set), how many samples, and where (``OUT/zero-shot``).
ZERO_SHOT_SYSTEM = "dipeptide:NY"
ZERO_SHOT_SAMPLES = 10_000
ZERO_SHOT_DIR = "zero-shot"
ZERO_SHOT_HEADING = "## Zero-shot: a pretrained transferable model on a peptide it never saw"


@dataclass
class DemoResult:
    """What the demo produced.

    Attributes:
        run: the trained :class:`~boltzflow.runs.Run` (its directory holds everything).
        metrics: the evaluation metrics (also in ``metrics.json``).
        report: path of ``report.md``.
        figures: PNG files written next to the report.
        seconds: wall-clock seconds per stage (``md``, ``train``, ``sample``, ``evaluate``,
            ``refine``).
        refined: metrics of the samples refined by AIS (``ais/metrics.json``), if the plan
            refined.
    """

    run: Any
    metrics: dict[str, Any]
    report: Path
    figures: list[Path]
    seconds: dict[str, float] = field(default_factory=dict)
    refined: dict[str, Any] | None = None


def run_molecular_demo(
    preset: Preset,
    out: str | Path,
    *,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    train_threads: int | None = None,
    after_md: Callable[[float], Preset] | None = None,
) -> DemoResult:
    """Simulate the MD reference, train the preset's flow on it, sample, evaluate, report.

    Args:
        preset: MD and training settings (e.g. :data:`~boltzflow.presets.QUICK_ALDP`).
        out: run directory; the MD dataset goes to ``out/md``.
        progress: show progress bars.
        echo: where the stage messages go.
        train_threads: torch threads for the training (default: as they are), e.g. the
            probe's choice (:func:`measure_speeds`); the count is restored afterwards.
        after_md: called with the MD's wall seconds once it has run; the preset it returns
            trains, samples and refines (the one-command path trims its steps where the MD
            overran the plan).

    Returns:
        A :class:`DemoResult`.
    """
    from . import runs
    from .md import geometric_temperatures, simulate
    from .threads import torch_threads

    out = Path(out)
    seconds: dict[str, float] = {}
    stages = 5 if preset.refine else 4
    config = preset.config(data=str(out / MD_DIR))
    system = runs.resolve_system(config)
    md = dict(preset.md)
    n_replicas, t_max = md.pop("replicas", None), md.pop("t_max", None)
    ladder = None
    if n_replicas:
        ladder = geometric_temperatures(system.temperature, t_max, n_replicas)
    where = f"{n_replicas} replicas {system.temperature:g}-{t_max:g} K" if ladder else "one replica"
    echo(f"[1/{stages}] MD reference: {md['ns']:g} ns of {system.id} ({where}, a frame every "
         f"{md.get('frame_interval_ps', 1.0):g} ps) → {out / MD_DIR} (cached, resumable) …")
    t0 = time.perf_counter()
    dataset = simulate(system, out / MD_DIR, replicas=ladder, progress=progress, **md)
    seconds["md"] = time.perf_counter() - t0
    if after_md is not None:
        preset = after_md(seconds["md"])
        config = preset.config(data=str(out / MD_DIR))

    echo(f"[2/{stages}] training a {config.params.n_layers}-layer internal-coordinate spline flow on "
         f"{len(dataset)} frames ({config.train.steps} steps, preset {preset.name!r}) …")
    t0 = time.perf_counter()
    with torch_threads(train_threads):
        run = runs.train(config, out, progress=progress)
    seconds["train"] = time.perf_counter() - t0

    echo(f"[3/{stages}] sampling {config.sample.n_samples} configurations …")
    t0 = time.perf_counter()
    runs.sample(run, config.sample.n_samples, progress=progress)
    seconds["sample"] = time.perf_counter() - t0

    echo(f"[4/{stages}] reweighting, evaluating and writing the report …")
    t0 = time.perf_counter()
    metrics = runs.evaluate(run)
    seconds["evaluate"] = time.perf_counter() - t0
    refined = None
    if preset.refine:
        echo(f"[5/{stages}] refining {preset.refine['n_samples']} more flow samples by "
             f"{refine_words(preset.refine)} → {out / REFINED_DIR} …")
        t0 = time.perf_counter()
        refined = refine_run(run, preset.refine, out / REFINED_DIR, progress=progress)
        seconds["refine"] = time.perf_counter() - t0
        _refined_section(out / "report.md", refined, metrics)
    return DemoResult(
        run=run, metrics=metrics, report=out / "report.md",
        figures=sorted(out.glob("*.png")), seconds=seconds, refined=refined,
    )


#: Where the one-command path's refined samples, metrics and report go, inside its run.
REFINED_DIR = "ais"


def refine_words(refine: dict[str, Any]) -> str:
    """``annealed importance sampling (25 levels × 2 MALA moves)`` for a refine section."""
    name = {"ais": "annealed importance sampling", "smc": "sequential Monte Carlo"}
    return f"{name[refine['method']]} ({refine['levels']} levels × {refine['steps']} MALA moves)"


def refine_run(run: Any, refine: dict[str, Any], out: Path, *, progress: bool = True
               ) -> dict[str, Any]:
    """Refine ``refine["n_samples"]`` of ``run``'s flow samples toward the target and evaluate
    them in ``out`` (``samples.npz``, ``refine.json``, ``metrics.json``, ``report.md``),
    against the run's MD (``data.npz`` linked there); returns their metrics."""
    import dataclasses
    import os
    import shutil

    from . import runs
    from .sampling.refine import RefineOptions

    out.mkdir(parents=True, exist_ok=True)
    data = out / runs.DATA_NAME
    if not data.exists():
        try:
            os.link(run.path / runs.DATA_NAME, data)
        except OSError:
            shutil.copyfile(run.path / runs.DATA_NAME, data)
    view = dataclasses.replace(run, path=out)
    options = RefineOptions(method=refine["method"], levels=refine["levels"],
                            steps=refine["steps"])
    runs.sample(view, refine["n_samples"], progress=progress, refine=options)
    return runs.evaluate(view)


def per_evaluation(m: dict[str, Any]) -> float:
    """Effective samples per 1,000 energy evaluations of a set's metrics: one evaluation per
    plain flow sample, ``refine_energy_evaluations_per_sample`` per refined one."""
    evals = m.get("refine_energy_evaluations_per_sample") or 1.0
    return 1000 * m["ess_samples"] / (m["n_samples"] * evals)


def preferred_estimate(plain: dict[str, Any], refined: dict[str, Any]) -> str | None:
    """``"plain"`` or ``"refined"``: which of a run's two reweighted estimates to use, from
    their metrics (``None`` where a tail index is unknown).

    The test is the Pareto tail index of each set's weights (``ess_tail_index``): at ≥ 0.5
    their variance is infinite and a few samples decide the estimate, so a set whose tail
    index is below 0.5 is preferred to one whose is not. Where both are below (or both above),
    the set with more effective samples per energy evaluation (:func:`per_evaluation`) is the
    better buy; on the bench's peptides that was the plain one whenever its tail was finite
    (``docs/benchmarks.md``, *Refined by AIS*).
    """
    from .sampling import heavy_tail

    tails = plain.get("ess_tail_index"), refined.get("ess_tail_index")
    if None in tails:
        return None
    heavy = [heavy_tail(t) for t in tails]
    if heavy[0] != heavy[1]:
        return "refined" if heavy[0] else "plain"
    return "plain" if per_evaluation(plain) >= per_evaluation(refined) else "refined"


def which_estimate(plain: dict[str, Any], refined: dict[str, Any]) -> str:
    """:func:`preferred_estimate` as a sentence for the report, with the numbers behind it."""
    def number(x: float) -> str:
        return f"{x:,.0f}" if x >= 10 else f"{x:.2g}"

    bought = (f"effective samples per 1,000 energy evaluations: plain "
              f"{number(per_evaluation(plain))}, refined {number(per_evaluation(refined))}")
    choice = preferred_estimate(plain, refined)
    if choice is None:
        return f"Which estimate: {bought} (no tail index recorded)."
    from .sampling import heavy_tail

    tails = plain["ess_tail_index"], refined["ess_tail_index"]
    words = f"tail index plain {tails[0]:.2f}, refined {tails[1]:.2f}"
    heavy = [heavy_tail(t) for t in tails]
    if heavy[0] != heavy[1]:
        other = "plain" if choice == "refined" else "refined"
        why = f"the {other} weights' variance is infinite, a few samples decide their numbers"
    else:
        why = ("both finite-variance" if not heavy[0] else "neither finite-variance"
               ) + "; more effective samples per energy evaluation"
    return f"Which estimate: the {choice} one ({words}: {why}; {bought})."


def _refined_section(report: Path, m: dict[str, Any], plain: dict[str, Any]) -> None:
    """The refined samples' headline in the run's report, with a link to their own, and
    which of the run's two estimates to use (:func:`which_estimate`)."""
    from .analysis.report import replace_section

    replace_section(report, "## Refined by annealed importance sampling", [
        f"{m['n_samples']} more samples of the flow, moved toward the Boltzmann distribution "
        f"through {m['refine_levels']} intermediate densities ({m['refine_mcmc_steps']} MALA moves "
        f"each, {m['refine_energy_evaluations_per_sample']:.0f} energy evaluations per sample); "
        "their weights are exact importance weights (unclipped, no resampling).",
        "",
        f"- {ess_line(m)}",
        f"- the same particles before refinement: ESS {m['refine_ess_before']:.2%} "
        f"({m['refine_ess_samples_before']:.1f} effective samples)",
        f"- valid samples {m['fraction_valid']:.1%}",
        "",
        which_estimate(plain, m),
        "",
        f"Their report: [{REFINED_DIR}/report.html]({REFINED_DIR}/report.html).",
    ])


def run_demo(
    system: str = "aldp-implicit",
    out: str | Path | None = None,
    *,
    quality: bool = False,
    steps: int | None = None,
    ns: float | None = None,
    n_samples: int | None = None,
    minutes: float | None = None,
    forcefield: str | None = None,
    solvent: str | None = None,
    temperature: float | None = None,
    zero_shot: bool = True,
    seed: int | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> DemoResult:
    """``boltzflow demo``: the molecular demo on alanine dipeptide (quick or ``quality``
    preset), :func:`run_molecule` on any other molecule, or the same workflow on a toy
    ``system``; prints the stages and the headline numbers, returns what was produced.

    The alanine-dipeptide demo ends, with ``zero_shot``, by :func:`run_zero_shot`: the
    pretrained transferable model samples a dipeptide it never saw, into the same report.
    ``seed`` (``train.seed``, default 0) seeds the training and, through it, the sampling and
    evaluation; the MD keeps its own seed, so two seeds in two directories train two flows of
    the same plan on the same kind of MD.

    Raises:
        BoltzflowError: ``quality`` for another system, options that do not apply to it, or an
            unknown system.
    """
    from . import runs
    from .errors import BoltzflowError
    from .models import config_with
    from .presets import QUALITY_ALDP, QUICK_ALDP
    from .systems.molecule import MolecularSystem
    from .threads import set_threads

    # One torch thread: the demo's small flows train faster on one (measured on 2 idle cores:
    # the quick aldp preset's 3000 steps took 225 s with one thread, 363 s with two sleeping
    # ones); the MD's replicas use the other core in their own processes. A molecule's run
    # trains with the thread count its probe found fastest (measure_speeds).
    set_threads(1)
    t_start = time.perf_counter()
    if system != QUICK_ALDP.system or minutes is not None:
        if quality:
            raise BoltzflowError(f"--quality is a preset for {QUICK_ALDP.system}, not for {system!r}"
                                 " (give --minutes for a longer run of another molecule)")
        config = config_with({}, {"system.id": system, "system.forcefield": forcefield,
                                  "system.solvent": solvent, "system.temperature": temperature})
        resolved = runs.resolve_system(config)
        if isinstance(resolved, MolecularSystem):
            result = run_molecule(system, out, forcefield=forcefield, solvent=solvent,
                                  temperature=temperature, minutes=minutes or DEFAULT_MINUTES,
                                  steps=steps, ns=ns, n_samples=n_samples, seed=seed,
                                  progress=progress, echo=echo, molecule=resolved)
            echo(f"wall clock {time.perf_counter() - t_start:.0f} s ("
                 + ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items()) + ")")
            _closing_lines(result, echo)
            return result
        if minutes is not None:
            raise BoltzflowError(f"--minutes plans a molecule's run; {system!r} is a toy (use "
                                 "--steps)")
        return run_toy_demo(system, out, steps=steps, n_samples=n_samples, seed=seed,
                            progress=progress, echo=echo)
    preset = (QUALITY_ALDP if quality else QUICK_ALDP).replace(
        md={} if ns is None else {"ns": ns},
        train=({} if steps is None else {"steps": steps}) | ({} if seed is None else {"seed": seed}),
        sample={} if n_samples is None else {"n_samples": n_samples},
    )
    result = run_molecular_demo(preset, out or ("runs/demo-quality" if quality else "runs/demo"),
                                progress=progress, echo=echo)
    m = result.metrics
    echo(f"valid samples {m['fraction_valid']:.1%}; {ess_line(m)}; "
         f"NLL {m.get('nll', float('nan')):.1f} nats")
    _gap_line(m, echo)
    if m.get("dF_phi_reweighted") is not None and m.get("dF_phi_md") is not None:
        echo(f"ΔF(φ>0 − φ<0): reweighted {_pm(m, 'dF_phi_reweighted')}, "
             f"MD {_pm(m, 'dF_phi_md')} kT (the MD entered φ>0 {m['md_phi_pos_visits']} times)")
    if zero_shot:
        t0 = time.perf_counter()
        shot = run_zero_shot(result.report.parent, n=min(ZERO_SHOT_SAMPLES, n_samples or
                                                          ZERO_SHOT_SAMPLES),
                             progress=progress, echo=echo)
        result.seconds["zero-shot"] = time.perf_counter() - t0
        result.figures += shot["figures"]
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items())
    echo(f"wall clock {time.perf_counter() - t_start:.0f} s ({stages})")
    _closing_lines(result, echo)
    return result


def run_zero_shot(
    out: str | Path, *, system_id: str = ZERO_SHOT_SYSTEM, n: int = ZERO_SHOT_SAMPLES,
    progress: bool = True, echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Sample ``system_id`` with the pretrained transferable model shipped with boltzflow
    (:mod:`boltzflow.pretrained`, installed into ``out/zero-shot``), evaluate it against the
    small MD reference shipped with the model, and add a section to ``out/report.md`` (and
    ``report.html``) with its ESS, validity and Ramachandran plot.

    Returns:
        The molecule's metrics with ``figures`` (the PNGs the section shows) and ``seconds``.
    """
    from . import pretrained, runs, systems
    from .analysis.report import replace_section
    from .sampling import few_effective_samples

    out = Path(out)
    t0 = time.perf_counter()
    info = pretrained.provenance("tbg-ic")
    run = pretrained.load("tbg-ic", out / ZERO_SHOT_DIR)
    system = systems.get(system_id)
    train = info["dataset"]["train"]
    seen = system_id.partition(":")[2] in train
    echo(f"[zero-shot] the pretrained transferable model (tbg-ic, trained on {len(train)} other "
         f"dipeptides) samples {system_id}, {'a training' if seen else 'a held-out'} peptide: "
         f"{n:,} samples, no training …")
    runs.sample(run, n, system=system, progress=progress)
    reference = runs.reference_frames(run, system, None)
    m = runs.evaluate(run, system=system, reference=reference)
    seconds = time.perf_counter() - t0
    where = run.dir_for(system)
    figures = [p for p in (where / "ramachandran.png",) if p.exists()]
    rel = where.relative_to(out)
    lines = [
        f"The pretrained transferable model shipped with boltzflow (`tbg-ic`, "
        f"`boltzflow.pretrained`; trained on {len(train)} dipeptides of the "
        f"`{info['dataset']['name']}` set, step {info['step']}) sampled `{system_id}` — "
        + ("one of its training peptides" if seen else "a dipeptide held out of its training")
        + f" — without training on it or simulating it: {m['n_samples']:,} samples in "
        f"{seconds:.0f} s "
        f"(`boltzflow sample --model tbg-ic --system {system_id}`).",
        "",
        "| metric | value |",
        "|---|---|",
        f"| ESS (Kish) | {ess_line(m).removeprefix('ESS ')} |",
        f"| valid samples (bond graph and Cα chirality) | {m.get('fraction_valid', 0):.1%} |",
    ]
    if m.get("energy_w2_model") is not None:
        lines.append(f"| energy W2 vs MD, raw / reweighted (kT) | {m['energy_w2_model']:.3g} / "
                     f"{m['energy_w2_reweighted']:.3g} |")
        lines.append(f"| torus W2 (φ, ψ) vs MD, raw / reweighted (rad) | "
                     f"{m['torus_w2_model']:.3g} / {m['torus_w2_reweighted']:.3g} |")
    if reference is not None:
        lines += ["", f"MD reference: {len(reference)} frames shipped with the model, "
                  f"{info['references']}."]
    if few_effective_samples(m.get("ess_samples")):
        lines += ["", f"**Few effective samples ({m['ess_samples']:.1f}).** On this peptide the "
                  "model's importance weights are degenerate: the reweighted panel below rests "
                  "on a handful of samples and is no estimate; the raw panel is what the model "
                  "learned. The transferable model's held-out numbers and what limits them are "
                  "in docs/transferable_ic.md."]
    for fig in figures:
        lines += ["", f"![Zero-shot Ramachandran: {system_id}]({rel / fig.name})"]
    lines += ["", f"Its full report: `{rel / 'report.md'}`."]
    replace_section(out / "report.md", ZERO_SHOT_HEADING, lines)
    echo(f"[zero-shot] {system_id}: {ess_line(m)}; valid {m.get('fraction_valid', 0):.1%} "
         f"({seconds:.0f} s)")
    return {**m, "figures": figures, "seconds": seconds}


def run_molecule(
    system: str,
    out: str | Path | None = None,
    *,
    forcefield: str | None = None,
    solvent: str | None = None,
    temperature: float | None = None,
    minutes: float = DEFAULT_MINUTES,
    steps: int | None = None,
    ns: float | None = None,
    n_samples: int | None = None,
    seed: int | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    molecule: Any = None,
) -> DemoResult:
    """A user's molecule in one call: plan, parallel-tempering MD, train, sample, reweight,
    report.

    The plan (:func:`~boltzflow.presets.plan_molecule`) comes from short probes of what MD and
    a training step cost for this molecule on this machine (:func:`measure_speeds`) and the
    ``minutes`` budget; it is printed and saved to ``out/plan.json``, and a rerun in ``out``
    resumes with the saved plan (MD chunks, training checkpoint), whatever ``minutes`` says.

    Args:
        system: a PDB file, ``peptide:SEQ``, ``dipeptide:XY`` or another molecule id.
        out: run directory (default ``runs/demo-<system>``).
        forcefield, solvent, temperature: a PDB file's physics (defaults amber14, obc2, 300 K).
        minutes: wall-clock budget of the whole run.
        steps, ns, n_samples: override the plan's training steps, MD length and samples
            (tests).
        seed: the training seed (``train.seed``; also seeds sampling and evaluation) instead
            of the plan's 0; the MD's seed stays the plan's.
        progress: progress bars.
        echo: where the messages go.
        molecule: ``system`` already resolved with these options (not built again).

    Raises:
        BoltzflowError: a bad PDB file, a residue the force field does not know, a system that
            is not a molecule (one line each).
    """
    import dataclasses
    import json

    from . import runs
    from .errors import BoltzflowError
    from .io import write_text_atomic
    from .models import config_with
    from .presets import energy_term, md_split, plan_molecule
    from .systems.molecule import MolecularSystem

    section = {k: v for k, v in (("forcefield", forcefield), ("solvent", solvent),
                                 ("temperature", temperature)) if v is not None}
    config = config_with({}, {"model": "internal", "system.id": system,
                              **{f"system.{k}": v for k, v in section.items()}})
    molecule = molecule or runs.resolve_system(config)
    if not isinstance(molecule, MolecularSystem):
        raise BoltzflowError(f"{system!r} is not a molecule; run_molecule needs a PDB file or a "
                             "molecule id")
    out = Path(out or Path("runs") / f"demo-{runs.slug(system)}")
    echo(f"system: {molecule.description or molecule.id} ({molecule.n_atoms} atoms)")
    plan_path = out / PLAN_NAME
    if plan_path.exists():
        saved = json.loads(plan_path.read_text())
        preset = Preset(**saved["preset"])
        threads = saved["speeds"].get("threads", 1)
        echo(f"resuming {out} with its saved plan ({plan_path}, {saved['minutes']:g} min)")
    else:
        echo(f"measuring MD and training speed for a {minutes:g}-minute plan …")
        speeds = measure_speeds(molecule, config)
        preset = plan_molecule(system, molecule.n_atoms, molecule.temperature, minutes, speeds,
                               section)
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(plan_path, json.dumps({
            "minutes": minutes, "n_atoms": molecule.n_atoms, "speeds": dataclasses.asdict(speeds),
            "preset": dataclasses.asdict(preset)}, indent=2) + "\n")
        threads = speeds.threads
        tried = ", ".join(f"{t:.3f} s on {n}" for n, t in speeds.step_seconds_by_threads.items())
        echo(f"measured: {speeds.md_ns_seconds:.0f} s per ns of MD per replica "
             f"({speeds.workers} worker processes), {speeds.step_seconds:.3f} s per training step"
             f" (threads: {tried}; training on {threads}), "
             f"{speeds.refine_seconds * 1e3:.2f} ms per particle and energy evaluation of AIS")
    # --ns, --steps, --n-samples override the plan (plan.json keeps it); the line shows what runs
    preset = preset.replace(md={} if ns is None else {"ns": ns},
                            data={} if ns is None else md_split(ns, preset.md["frame_interval_ps"]),
                            train=({} if steps is None else {"steps": steps})
                            | ({} if seed is None else {"seed": seed}),
                            model={} if steps is None else {"kl_start": steps // 2},
                            sample={} if n_samples is None else {"n_samples": n_samples},
                            refine={} if n_samples is None or not preset.refine else
                            {"n_samples": min(n_samples, preset.refine["n_samples"])})
    md, p = preset.md, preset.model
    echo(f"plan: {md['ns']:g} ns of MD ({md['replicas']} replicas {molecule.temperature:g}-"
         f"{md['t_max']:g} K, a frame every {md['frame_interval_ps']:g} ps"
         + (f", {md['timestep_fs']:g}-fs steps with {md['hydrogen_mass_amu']:g}-amu hydrogens"
            if md.get("hydrogen_mass_amu") else "") + f"); a {p['n_layers']}-"
         f"layer spline flow, hidden {p['hidden']}, {preset.train['steps']} steps of "
         f"{preset.train.get('batch_size', 256)} frames"
         + (", compiled splines" if preset.train.get("compile") else "")
         + (f" ({energy_term(p)} from step {p['kl_start']})" if p.get("w_kl") or p.get("w_lv")
            else " (maximum likelihood)") + f"; {preset.sample['n_samples']} samples"
         + (f", then {preset.refine['n_samples']} refined by {refine_words(preset.refine)}"
            if preset.refine else "")
         + (f"; seed {preset.train['seed']}" if preset.train.get("seed") else ""))

    def after_md(md_seconds: float) -> Preset:
        return trim_after_md(preset, plan_path, md_seconds, echo, fixed=steps is not None)

    result = run_molecular_demo(preset, out, progress=progress, echo=echo,
                                train_threads=threads, after_md=after_md)
    m = result.metrics
    echo(f"valid samples {m['fraction_valid']:.1%}; {ess_line(m)}; "
         f"NLL {m.get('nll', float('nan')):.1f} nats")
    _gap_line(m, echo)
    if m.get("n_high_energy") is not None:
        echo(f"samples above the highest MD energy + {m['high_energy_margin']:g} kT: "
             f"{m['n_high_energy']} of {m['n_samples']} (their weight is in the ESS, unclipped)")
    for ring in m.get("ring_closures") or []:
        echo(f"ring closure {ring['bond']}: width {ring['model_sd']:.4f} nm, MD "
             f"{ring['md_sd']:.4f} nm (ratio {ring['ratio']:.2f})")
    _sources_line(m, echo)
    if result.refined is not None:
        r = result.refined
        echo(f"refined by AIS ({r['refine_energy_evaluations_per_sample']:.0f} energy evaluations "
             f"per sample): valid {r['fraction_valid']:.1%}; {ess_line(r)}; the same "
             f"{r['n_samples']} particles before: ESS {r['refine_ess_before']:.2%} "
             f"({r['refine_ess_samples_before']:.1f} effective) → {result.run.path / REFINED_DIR}")
        echo(which_estimate(m, r))
    return result


def trim_after_md(preset: Preset, plan_path: Path, md_seconds: float,
                  echo: Callable[[str], None] = print, *, fixed: bool = False) -> Preset:
    """The one-command path's preset once its MD has run: its training steps trimmed where the
    MD took longer than the plan priced it (:func:`~boltzflow.presets.steps_after_md`).

    The MD's seconds, the plan's and the steps decided are added to ``plan_path``
    (``plan.json``) the first time; a resumed run reads the decision back and trains the same
    steps (a run interrupted during its MD decides on the resumed part's seconds only).

    Args:
        preset: the plan as it runs.
        plan_path: its ``plan.json`` (with the probe's ``speeds`` and the ``minutes``).
        md_seconds: wall seconds the MD took in this call.
        echo: where the message goes when the steps change.
        fixed: the steps were given (``--steps``): recorded, never trimmed.
    """
    import json

    from .io import write_text_atomic
    from .presets import Speeds, planned_md_seconds, steps_after_md

    saved = json.loads(plan_path.read_text())
    if "md_seconds" not in saved:
        speeds = Speeds(**saved["speeds"])
        planned = planned_md_seconds(preset.md["ns"], speeds, preset.md["replicas"])
        saved["md_seconds"], saved["md_seconds_planned"] = md_seconds, planned
        saved["steps_after_md"] = (preset.train["steps"] if fixed else steps_after_md(
            preset.train["steps"], md_seconds, planned, speeds.step_seconds))
        write_text_atomic(plan_path, json.dumps(saved, indent=2) + "\n")
        if saved["steps_after_md"] < preset.train["steps"]:
            echo(f"the MD took {md_seconds:.0f} s where the plan said {planned:.0f} s: "
                 f"{saved['steps_after_md']} training steps instead of "
                 f"{preset.train['steps']}, to keep the {saved['minutes']:g}-minute budget")
    new = saved["steps_after_md"]
    if fixed or new == preset.train["steps"]:
        return preset
    kl_start = preset.model.get("kl_start", 0) * new // preset.train["steps"]
    return preset.replace(train={"steps": new}, model={"kl_start": kl_start})


def _sources_line(m: dict[str, Any], echo: Callable[[str], None]) -> None:
    """Name the force-field term the log-weights follow most, where it explains a fifth of
    their variance or more (``energy_terms`` of the metrics)."""
    terms = [t for t in m.get("energy_terms") or [] if t["term"] != "all terms"]
    if not terms:
        return
    top = max(terms, key=lambda t: t["share"])
    if top["share"] >= 0.2:
        echo(f"the log-weights follow the {top['term']} energy most ({top['share']:.0%} of their "
             f"variance; samples {top['model_mean']:.2f} kT on average, MD "
             f"{top['md_mean']:.2f}): the flow's error is there (docs/molecules.md)")


def measure_speeds(system: Any, config: Any, *, probe_ns: float = 0.01) -> Any:
    """:class:`~boltzflow.presets.Speeds` of ``system`` on this machine: a short MD run (one
    replica, a few seconds) and a few training steps of the planned flow on its frames, with
    one torch thread and with the free cores (:func:`~boltzflow.threads.thread_choices`); the
    plan prices the faster, and the training runs with it.

    The probe's times for each count are printed and kept in ``plan.json``
    (docs/benchmarks.md has those of the benchmark's peptides).

    Args:
        system: the molecule.
        config: a ``model: internal`` config of it (its ``system`` section is used).
        probe_ns: length of the probe MD.
    """
    import tempfile

    import torch

    from .md import simulate
    from .md.simulate import replica_workers
    from .models import config_with, get_kind
    from .models.base import TrainingSet
    from .presets import MOLECULE_MD, MOLECULE_MODEL, Speeds, flow_for_size, train_for_size
    from .threads import thread_choices, torch_threads
    from .transforms.splines import compiled_splines

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        dataset = simulate(system, Path(tmp) / "md", ns=probe_ns, equilibration_ps=1.0,
                           frame_interval_ps=MOLECULE_MD["frame_interval_ps"], progress=False,
                           timestep_fs=MOLECULE_MD["timestep_fs"],
                           hydrogen_mass_amu=MOLECULE_MD["hydrogen_mass_amu"])
        md_ns_seconds = (time.perf_counter() - t0) / (probe_ns + 0.001)
        frames = dataset.positions.float()
    model_section = {**MOLECULE_MODEL, **flow_for_size(system.n_atoms),
                     "kl_start": PROBE_PHASE_STEPS}
    probe = config_with(config.to_dict(), {
        **{f"internal.{k}": v for k, v in model_section.items()},
        **{f"train.{k}": v for k, v in train_for_size(system.n_atoms).items()}})
    model = get_kind("internal").build(probe, TrainingSet(system=system, data=frames))
    model.to(torch.device("cpu"), torch.float32)
    optimizer = torch.optim.Adam(model.module.parameters(), lr=1e-4)
    choices = thread_choices()

    def steps() -> list[float]:
        """Seconds of each step, likelihood only, then with the energy term."""
        seconds = []
        for step in range(2 * PROBE_PHASE_STEPS):
            t0 = time.perf_counter()
            loss = model.loss(model.batch(step), step)["loss"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            seconds.append(time.perf_counter() - t0)
        return seconds

    times: dict[int, list[list[float]]] = {n: [[], []] for n in choices}
    with compiled_splines(probe.train.compile):  # compiled once here, reused by training
        # an untimed round per count compiles (inductor compiles again for another thread
        # count) and warms up; then the counts take turns
        for n in choices:
            with torch_threads(n):
                steps()
        for n in choices * PROBE_ROUNDS:
            with torch_threads(n):
                t = steps()
            times[n][0] += t[:PROBE_PHASE_STEPS]
            times[n][1] += t[PROBE_PHASE_STEPS:]
    # the plan spends half its steps in each phase
    by_threads = {n: (statistics.median(a) + statistics.median(b)) / 2
                  for n, (a, b) in times.items()}
    threads = min(by_threads, key=lambda n: (by_threads[n], n))
    return Speeds(md_ns_seconds=md_ns_seconds, step_seconds=by_threads[threads],
                  workers=replica_workers(MOLECULE_MD["replicas"], None), threads=threads,
                  step_seconds_by_threads=by_threads, refine_seconds=_refine_seconds(model, system))


def _refine_seconds(model: Any, system: Any, n: int = 1024) -> float:
    """Wall seconds per particle and energy evaluation of AIS with ``model``'s flow (the
    probe's, untrained: the cost does not depend on the weights), threads as they are (as
    the demo refines). Batches of ``n`` particles: with 128 the per-call overhead priced a
    46-atom peptide's evaluation at 1.09 ms, with 1,024 at 0.66 ms (refining 5,000 of its
    particles took 0.45 ms each)."""
    from .sampling.refine import RefineOptions, refine

    t0 = time.perf_counter()
    result = refine(model.flow_for(system), model.energy_of(system), n,
                    RefineOptions(levels=1, steps=2, pilot=256, seed=0))
    evaluations = (result.info["energy_evaluations_per_sample"] * n
                   + result.info["energy_evaluations_pilot"])
    return (time.perf_counter() - t0) / evaluations


def ess_line(m: dict[str, Any]) -> str:
    """``ESS 20.1 % (90 % interval 12.0–25.3 % over draws; 4021 effective samples; …)``, with
    the log-weight spread (:func:`~boltzflow.sampling.log_weight_spread`) where known."""
    interval = ""
    if m.get("ess_low") is not None and math.isfinite(m["ess_low"]) and math.isfinite(
            m["ess_high"]):
        digits = 1 if m["ess_high"] >= 0.01 else 2
        interval = (f"{m['ess_level']:.0%} interval {m['ess_low']:.{digits}%}–"
                    f"{m['ess_high']:.{digits}%}; ")
    count = f"{m['ess_samples']:.1f}" if m["ess_samples"] < 100 else f"{m['ess_samples']:.0f}"
    spread = ("" if m.get("log_w_spread") is None else
              f"; log-weight spread σ {m['log_w_spread']:.2f} nats: Gaussian log-weights would "
              f"give exp(−σ²) = {math.exp(-m['log_w_spread'] ** 2):.1%}")
    return (f"ESS {m['ess']:.2%} ({interval}{count} effective samples; "
            f"clipped {m['ess_clipped']:.2%}; largest weight {m.get('max_weight') or 0:.3g}"
            f"{spread})")


def _gap_line(m: dict[str, Any], echo: Callable[[str], None]) -> None:
    """How much better the flow fits its training frames than the held-out ones (overfitting
    to the MD frames)."""
    if m.get("nll_gap") is not None:
        hint = ("" if m["nll_gap"] <= 1.0 else
                " (it has learned these frames rather than the distribution: longer MD helps, "
                "longer training does not; docs/benchmarks.md)")
        echo(f"NLL of training frames {m['nll_train']:.1f} nats: the flow fits frames it saw "
             f"{m['nll_gap']:.1f} nats better than the last MD frames it never saw{hint}")


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
    progress: bool, echo: Callable[[str], None], seed: int | None = None,
) -> DemoResult:
    """Train, sample and evaluate the default model of a toy ``system`` into ``out``."""
    from . import runs
    from .models import config_with

    config = config_with({}, {"system.id": system, "train.steps": steps, "train.seed": seed,
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
