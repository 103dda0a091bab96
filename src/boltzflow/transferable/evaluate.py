"""Evaluation of a transferable BG over a split of a dipeptide dataset: a per-peptide table,
means, and a grid of Ramachandran plots (MD vs reweighted model), as Markdown, PNG and JSON.

Each peptide is sampled zero-shot into ``OUT/<sequence>/`` (samples, metrics, report); a
peptide whose ``metrics.json`` already holds as many samples is not sampled again, so an
interrupted evaluation resumes.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import BoltzflowError
from ..io import write_text_atomic
from ..sampling import Samples
from .model import TBGModel, describe_solver
from .sample import (
    FEW_EFFECTIVE_SAMPLES,
    METRICS_NAME,
    SAMPLES_NAME,
    PeptideResult,
    analyze_samples,
    mirror_fix_applies,
    sample_peptide,
)

__all__ = ["COLUMNS", "EvaluationResult", "evaluate_split", "format_table"]

TABLE_NAME = "evaluation.md"
JSON_NAME = "evaluation.json"
GRID_NAME = "ramachandran_grid.png"

#: ``(metric key, column header, format)`` of the per-peptide table.
COLUMNS = (
    ("ess", "ESS", "{:.2%}"),
    ("ess_samples", "ESS n", "{:.1f}"),
    ("fraction_valid", "valid", "{:.1%}"),
    ("fraction_mirrored", "mirrored", "{:.1%}"),
    ("energy_w2_model", "E-W2 raw", "{:.3g}"),
    ("energy_w2_reweighted", "E-W2 rw", "{:.3g}"),
    ("torus_w2_model", "T-W2 raw", "{:.3f}"),
    ("torus_w2_reweighted", "T-W2 rw", "{:.3f}"),
    ("dF_phi_md", "ΔF MD", "{:.2f}"),
    ("dF_phi_reweighted", "ΔF rw", "{:.2f}"),
    ("dF_phi_error", "ΔF rw − MD", "{:+.2f}"),
)


@dataclass
class EvaluationResult:
    """Per-peptide metrics, their means and the files written."""

    rows: dict[str, dict[str, Any]]
    means: dict[str, float]
    table: Path
    grid: Path | None
    json: Path


def _mean(values: list[Any]) -> float | None:
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return sum(finite) / len(finite) if finite else None


def format_table(rows: dict[str, dict[str, Any]], means: dict[str, Any]) -> str:
    """The Markdown table: one row per peptide, then the means (and, for T-W2, a count)."""
    header = "| peptide | n | " + " | ".join(h for _, h, _ in COLUMNS) + " |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 2)]

    def cell(value, fmt):
        return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else fmt.format(value)

    for seq, m in rows.items():
        cells = [cell(m.get(k), f) for k, _, f in COLUMNS]
        lines.append(f"| {seq} | {m.get('n_samples', '–')} | " + " | ".join(cells) + " |")
    cells = [cell(means.get(k), f) for k, _, f in COLUMNS]
    lines.append("| **mean** | | " + " | ".join(cells) + " |")
    better = means.get("n_torus_w2_improved")
    if better is not None:
        lines += ["", f"Reweighted T-W2 below raw T-W2 for {better} of {means['n_compared']} "
                      "peptides."]
    few = [seq for seq, m in rows.items() if _effective_samples(m) < FEW_EFFECTIVE_SAMPLES]
    if few:
        lines += ["", f"Fewer than {FEW_EFFECTIVE_SAMPLES} effective samples for {len(few)} of "
                      f"{len(rows)} peptides ({', '.join(few)}): their reweighted columns (rw) "
                      "rest on a handful of samples and are not estimates to trust."]
    return "\n".join(lines)


def _effective_samples(m: dict[str, Any]) -> float:
    """Kish effective samples of a row (rows written before ``ess_samples`` existed too)."""
    if m.get("ess_samples") is not None:
        return float(m["ess_samples"])
    return float(m.get("ess") or 0.0) * float(m.get("n_samples") or 0)


def evaluate_split(
    model: TBGModel,
    dataset: str | Path,
    out: str | Path,
    *,
    split: str = "test",
    n_samples: int = 1000,
    sequences: list[str] | None = None,
    seed: int = 0,
    max_reference: int = 20000,
    plots: bool = True,
    echo: Callable[[str], None] | None = None,
    progress: bool = False,
) -> EvaluationResult:
    """Sample every peptide of ``split`` zero-shot and compare it with its MD.

    Writes ``OUT/evaluation.md`` (table + means), ``OUT/evaluation.json`` (all metrics),
    ``OUT/ramachandran_grid.png`` (one row per peptide: MD, raw model, reweighted model) and
    ``OUT/<sequence>/`` per peptide.

    Args:
        model: the transferable BG.
        dataset: a dipeptide dataset directory (index + MD per peptide).
        out: output directory.
        split: ``"test"``, ``"train"`` or ``"all"``.
        n_samples: samples per peptide (each with an exact ``log_q``).
        sequences: evaluate only these (default: the whole split).
        max_reference: at most this many MD frames per peptide (thinned evenly) as reference.
    """
    from ..data.dipeptides import load_index

    index = load_index(dataset)
    if split not in ("test", "train", "all"):
        raise BoltzflowError(f"--split must be test, train or all, got {split!r}")
    chosen = index.sequences(None if split == "all" else split)
    if sequences is not None:
        missing = [s for s in sequences if s not in chosen]
        if missing:
            raise BoltzflowError(f"{', '.join(missing)} not in the {split} split of {dataset}")
        chosen = list(sequences)
    if not chosen:
        raise BoltzflowError(f"the {split} split of {dataset} holds no peptides")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    from .. import systems

    rows: dict[str, dict[str, Any]] = {}
    results: dict[str, PeptideResult] = {}
    for k, seq in enumerate(chosen):
        entry = index.entry(seq)
        reference = index.dataset(seq).positions
        if len(reference) > max_reference:
            reference = reference[torch.linspace(0, len(reference) - 1, max_reference).long()]
        pep_dir = out / seq
        t0 = time.perf_counter()
        cached = _cached(pep_dir, n_samples, entry.system_id)
        if cached is not None:
            result = analyze_samples(
                systems.get(entry.system_id), cached, reference,
                out_dir=pep_dir if plots else None, seed=seed + k,  # as when it was sampled
                mirror=mirror_fix_applies(model),
            )
            previous = json.loads((pep_dir / METRICS_NAME).read_text())
            for key in ("sample_seconds", "sample_seconds_per_sample"):
                if key in previous:
                    result.metrics[key] = previous[key]
        else:
            result = sample_peptide(
                model, entry.system_id, n_samples, out=pep_dir, reference=reference,
                seed=seed + k, progress=progress, plots=plots,
            )
        result.metrics["seen_in_training"] = seq in set(model.metadata.get("train_sequences", []))
        result.metrics["n_reference"] = len(reference)
        results[seq] = result
        rows[seq] = result.metrics
        if echo is not None:
            m = result.metrics
            echo(
                f"[{k + 1}/{len(chosen)}] {seq}: ESS {m['ess']:.2%}, valid "
                f"{m['fraction_valid']:.1%} ({m['n_mirrored']} mirrored), T-W2 "
                f"{_fmt(m.get('torus_w2_model'))} raw / {_fmt(m.get('torus_w2_reweighted'))} "
                f"reweighted ({time.perf_counter() - t0:.0f} s)"
            )
    means: dict[str, Any] = {k: _mean([r.get(k) for r in rows.values()]) for k, _, _ in COLUMNS}
    pairs = [(r.get("torus_w2_model"), r.get("torus_w2_reweighted")) for r in rows.values()]
    pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
    means["n_compared"] = len(pairs)
    means["n_torus_w2_improved"] = sum(b < a for a, b in pairs)
    abs_err = [abs(r["dF_phi_error"]) for r in rows.values() if r.get("dF_phi_error") is not None]
    means["dF_phi_abs_error"] = sum(abs_err) / len(abs_err) if abs_err else None
    grid = _grid(results, out / GRID_NAME) if plots else None
    table = format_table(rows, means)
    text = [
        f"# Transferable BG evaluation: {split} split of `{dataset}`",
        "",
        f"{len(rows)} peptides, {n_samples} samples each ({describe_solver(model.config)}); "
        f"model {model.field.n_layers} × {model.field.hidden}, step "
        f"{model.metadata.get('step')}, trained on {len(model.metadata.get('train_sequences', []))} "
        "peptides.",
        "",
        table,
        "",
        "ESS: Kish, as a fraction of all samples (invalid ones weigh 0). valid: bond graph and "
        + ("L-Cα after the mirror fix (mirrored: samples whose Cα were all D, reflected x → −x). "
           if mirror_fix_applies(model) else
           "L-Cα; the field is chiral, so no mirror fix (D samples are invalid). ")
        + "E-W2 (kT), T-W2 on (φ, ψ) (rad): raw model and reweighted against MD. ΔF: "
        "F(φ>0) − F(φ<0) of residue 2's φ (kT).",
        "",
    ]
    if grid is not None:
        text += ["## Ramachandran plots (ψ of residue 1, φ of residue 2)", "",
                 f"![Ramachandran grid]({grid.name})", ""]
    table_path = out / TABLE_NAME
    write_text_atomic(table_path, "\n".join(text) + "\n")
    json_path = out / JSON_NAME
    payload = {"split": split, "dataset": str(dataset), "n_samples": n_samples,
               "peptides": rows, "means": means}
    write_text_atomic(json_path, json.dumps(payload, indent=2, default=_json_default) + "\n")
    return EvaluationResult(rows, means, table_path, grid, json_path)


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def _json_default(value):
    if isinstance(value, torch.Tensor):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _cached(pep_dir: Path, n: int, system_id: str) -> Samples | None:
    """Samples of an earlier run of this evaluation with ``n`` samples, if complete."""
    metrics = pep_dir / METRICS_NAME
    if not (metrics.exists() and (pep_dir / SAMPLES_NAME).exists()):
        return None
    try:
        if json.loads(metrics.read_text()).get("n_samples") != n:
            return None
        return Samples.load(pep_dir / SAMPLES_NAME, system_id=system_id)
    except (BoltzflowError, ValueError):
        return None


def _grid(results: dict[str, PeptideResult], path: Path) -> Path:
    from ..analysis.molplots import plot_ramachandran_grid

    entries = []
    for seq, r in results.items():
        phi, psi = r.angles
        raw = torch.where(
            torch.isfinite(r.samples.log_w), torch.zeros_like(r.samples.log_w),
            torch.full_like(r.samples.log_w, -torch.inf),
        )
        if r.reference_angles is not None:
            entries.append((f"{seq} MD", *r.reference_angles, None))
        entries.append((f"{seq} model", phi, psi, raw))
        entries.append((f"{seq} reweighted", phi, psi, r.samples.log_w))
    n_cols = 3 if any(r.reference_angles is not None for r in results.values()) else 2
    return plot_ramachandran_grid(entries, path, n_cols=n_cols)
