"""``boltzflow demo``: the main job in one command (:func:`boltzflow.demo.run_demo`)."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import FF_HELP, SOLVENT_HELP, TEMP_HELP


def demo_cmd(
    out: Path | None = typer.Option(
        None, "--out", "-o",
        help="Run directory (default runs/demo, runs/demo-quality with --quality, runs/demo-SYSTEM "
        "for a toy).",
    ),
    system: str = typer.Option(
        "aldp-implicit", "--system", "-s",
        help="aldp-implicit (the built-in demo), your molecule (a PDB file, peptide:SEQ, "
        "dipeptide:XY: MD with parallel tempering, training and report planned for --minutes) or "
        "a toy system id (e.g. double-well: reference samples built in).",
    ),
    minutes: float | None = typer.Option(
        None, "--minutes",
        help="Wall-clock budget for a molecule other than the built-in demo [30]; the plan is "
        "printed and saved, and a rerun resumes it.",
    ),
    forcefield: str | None = typer.Option(None, "--forcefield", help=FF_HELP),
    solvent: str | None = typer.Option(None, "--solvent", help=SOLVENT_HELP),
    temperature: float | None = typer.Option(None, "--temperature", help=TEMP_HELP),
    quality: bool = typer.Option(
        False, "--quality", help="Longer MD and training (boltzflow.presets.QUALITY_ALDP, about 40 min)."
    ),
    steps: int | None = typer.Option(None, "--steps", help="Training steps (overrides the preset)."),
    ns: float | None = typer.Option(None, "--ns", hidden=True, help="MD length (ns), for tests."),
    n_samples: int | None = typer.Option(None, "--n-samples", hidden=True, help="For tests."),
    zero_shot: bool = typer.Option(
        True, "--zero-shot/--no-zero-shot",
        help="End the alanine-dipeptide demo with the pretrained transferable model sampling a "
        "dipeptide it never saw (about a minute), added to the report.",
    ),
    seed: int | None = typer.Option(
        None, "--seed", help="Training seed (also seeds sampling and evaluation) [0]; the MD "
        "keeps its own. Another seed in another --out trains another flow of the same plan.",
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """The main job: MD reference, train, sample, reweight, report (about 7 min on 2 idle
    cores), then a zero-shot sample of the pretrained transferable model."""
    from ..demo import run_demo

    run_demo(system, out, quality=quality, steps=steps, ns=ns, n_samples=n_samples,
             minutes=minutes, forcefield=forcefield, solvent=solvent, temperature=temperature,
             zero_shot=zero_shot, seed=seed, progress=progress, echo=typer.echo)


def register(app: typer.Typer) -> None:
    """Add the command to ``app``."""
    app.command("demo")(demo_cmd)
