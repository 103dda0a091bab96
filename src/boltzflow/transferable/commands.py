"""The transferable-BG commands behind ``boltzflow train --model tbg``, ``boltzflow sample
--checkpoint`` and ``boltzflow evaluate --checkpoint`` (the CLI only parses and dispatches)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from ..errors import BoltzflowError
from .config import TBGConfig

Echo = Callable[[str], None]


def train_command(
    *,
    dataset: Path | None,
    config: Path | None,
    out: Path | None,
    steps: int | None,
    seed: int | None,
    device: str | None,
    progress: bool,
    echo: Echo,
) -> None:
    """``boltzflow train --model tbg --dataset DIR [--config tbg.yaml] [--out RUN] [--steps N]``."""
    from ..config import read_config_file
    from ..training.distributed import world
    from .train import train_tbg

    if dataset is None:
        raise BoltzflowError(
            "--model tbg trains on a dipeptide dataset: pass --dataset DIR (build one with "
            "`boltzflow dataset dipeptides --out DIR`)"
        )
    values = read_config_file(config) if config is not None else {}
    values.pop("model", None)  # `model: tbg` may sit in the file too
    cfg = TBGConfig.from_dict(values, source=str(config) if config else "tbg config")
    cfg = cfg.replace(steps=steps, seed=seed, device=device)
    out = out or Path("runs") / "tbg"
    train_tbg(cfg, dataset, out, progress=progress, echo=echo)
    if world().is_main:
        echo(f"trained a transferable BG for {cfg.steps} steps → {out / 'checkpoint.pt'}")
        echo(
            f"next: boltzflow evaluate --checkpoint {out / 'checkpoint.pt'} --dataset {dataset} "
            "--split test --n-samples 1000"
        )


def _load(
    checkpoint: Path, device: str | None, solver: str | None, steps: int | None,
    quadrature_power: float | None = None,
):
    """The model, on ``device``, with the sampling integrator overridden where given."""
    from .model import load_tbg
    from .train import _device

    model = load_tbg(checkpoint, device=_device(device or "cpu"))
    model.config = model.config.replace(
        solver=solver, rk4_steps=steps, quadrature_power=quadrature_power
    )
    return model


def _reference_frames(reference: Path | None, system_id: str) -> torch.Tensor | None:
    """MD frames of ``system_id`` from an MD dataset or a dipeptide dataset directory."""
    if reference is None:
        return None
    from ..data import Dataset
    from ..data.dipeptides import INDEX_NAME, load_index

    if (Path(reference) / INDEX_NAME).exists():
        return load_index(reference).dataset(system_id).positions
    data = Dataset.load(reference)
    if data.system_id != system_id:
        raise BoltzflowError(
            f"--reference {reference} holds MD of {data.system_id!r}, not {system_id!r}"
        )
    return data.positions


def sample_command(
    *,
    checkpoint: Path,
    system: str | None,
    n: int,
    out: Path | None,
    reference: Path | None,
    seed: int | None,
    device: str | None,
    solver: str | None,
    solver_steps: int | None,
    progress: bool,
    echo: Echo,
    quadrature_power: float | None = None,
) -> None:
    """``boltzflow sample --checkpoint CKPT --system dipeptide:NY -n N [--out DIR]``.

    Samples with exact ``log_q``, energies and weights, the mirror fix, validity, analysis and
    ``report.md`` — all into ``--out`` (default ``runs/tbg-samples-<XY>``).
    """
    from .sample import sample_peptide

    if system is None:
        raise BoltzflowError("--checkpoint needs --system, e.g. --system dipeptide:NY")
    model = _load(checkpoint, device, solver, solver_steps, quadrature_power)
    out = out or Path("runs") / f"tbg-samples-{system.replace(':', '-')}"
    result = sample_peptide(
        model, system, n, out=out, reference=_reference_frames(reference, system),
        seed=0 if seed is None else seed, progress=progress,
    )
    m = result.metrics
    echo(
        f"{m['n_samples']} samples of {system} → {out / 'samples.npz'}: ESS {m['ess']:.2%}, "
        f"valid {m['fraction_valid']:.1%} ({m['n_mirrored']} mirrored)"
    )
    echo(f"report: {out / 'report.md'}")


def evaluate_command(
    *,
    checkpoint: Path,
    dataset: Path | None,
    split: str,
    n_samples: int,
    out: Path | None,
    seed: int | None,
    device: str | None,
    solver: str | None,
    solver_steps: int | None,
    plots: bool,
    progress: bool,
    echo: Echo,
    quadrature_power: float | None = None,
) -> None:
    """``boltzflow evaluate --checkpoint CKPT --dataset DIR --split test [--n-samples N] --out DIR``."""
    from .evaluate import evaluate_split, format_table

    if dataset is None:
        raise BoltzflowError("--checkpoint needs --dataset DIR (a dipeptide dataset with MD)")
    model = _load(checkpoint, device, solver, solver_steps, quadrature_power)
    out = out or Path(checkpoint).resolve().parent / f"eval-{split}"
    result = evaluate_split(
        model, dataset, out, split=split, n_samples=n_samples,
        seed=0 if seed is None else seed, plots=plots, echo=echo, progress=progress,
    )
    echo(format_table(result.rows, result.means))
    echo(f"table: {result.table}" + (f"; grid: {result.grid}" if result.grid else ""))
