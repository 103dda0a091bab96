"""The table of a transferable model's evaluation over a dataset split: one row per molecule,
means, a count of effective samples, and a grid of Ramachandran plots (MD, raw model,
reweighted), as Markdown, PNG and JSON."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..io import write_text_atomic
from ..models.base import ModelKind
from ..sampling import FEW_EFFECTIVE_SAMPLES
from .evaluate import SystemEvaluation, json_default

__all__ = ["COLUMNS", "EvaluationResult", "format_table", "split_table"]

TABLE_NAME = "evaluation.md"
JSON_NAME = "evaluation.json"
GRID_NAME = "ramachandran_grid.png"

#: ``(metric key, column header, format)`` of the per-peptide table.
COLUMNS = (
    ("ess", "ESS", "{:.2%}"),
    ("ess_samples", "ESS n", "{:.1f}"),
    ("log_w_spread", "σ log w", "{:.2f}"),
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


def mean_of(values: list[Any]) -> float | None:
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
    few = [seq for seq, m in rows.items() if effective_samples(m) < FEW_EFFECTIVE_SAMPLES]
    if few:
        lines += ["", f"Fewer than {FEW_EFFECTIVE_SAMPLES} effective samples for {len(few)} of "
                      f"{len(rows)} peptides ({', '.join(few)}): their reweighted columns (rw) "
                      "rest on a handful of samples and are not estimates to trust."]
    return "\n".join(lines)


def effective_samples(m: dict[str, Any]) -> float:
    """Kish effective samples of a row (rows written before ``ess_samples`` existed too)."""
    if m.get("ess_samples") is not None:
        return float(m["ess_samples"])
    return float(m.get("ess") or 0.0) * float(m.get("n_samples") or 0)




def split_table(
    model: ModelKind, dataset: str, split: str, rows: dict[str, dict[str, Any]],
    results: dict[str, SystemEvaluation], out: Path, n_samples: int, *, plots: bool = True,
) -> EvaluationResult:
    """Write ``OUT/evaluation.md`` (table + means), ``OUT/evaluation.json`` (all metrics) and
    ``OUT/ramachandran_grid.png`` (one row per molecule: MD, raw model, reweighted model)."""
    means: dict[str, Any] = {k: mean_of([r.get(k) for r in rows.values()]) for k, _, _ in COLUMNS}
    pairs = [(r.get("torus_w2_model"), r.get("torus_w2_reweighted")) for r in rows.values()]
    pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
    means["n_compared"] = len(pairs)
    means["n_torus_w2_improved"] = sum(b < a for a, b in pairs)
    abs_err = [abs(r["dF_phi_error"]) for r in rows.values() if r.get("dF_phi_error") is not None]
    means["dF_phi_abs_error"] = sum(abs_err) / len(abs_err) if abs_err else None
    grid = ramachandran_grid(results, out / GRID_NAME) if plots else None
    mirror = model.mirror_symmetric()
    text = [
        f"# {model.name} evaluation: {split} split of `{dataset}`",
        "",
        f"{len(rows)} molecules, {n_samples} samples each; model: {model.describe()}, step "
        f"{model.info.get('step')}.",
        "",
        format_table(rows, means),
        "",
        "ESS: Kish, as a fraction of all samples (invalid ones weigh 0); ESS n: as a count of "
        "samples. valid: bond graph and "
        + ("L-Cα after the mirror fix (mirrored: samples whose Cα were all D, reflected x → −x). "
           if mirror else "L-Cα; the model's density is chiral, so no mirror fix. ")
        + "E-W2 (kT), T-W2 on (φ, ψ) (rad): raw model and reweighted against MD. ΔF: "
        "F(φ>0) − F(φ<0) of residue 2's φ (kT); in each molecule's metrics.json its error is "
        "a block-averaging error over the time-ordered MD frames for MD "
        "(dF_phi_md_stderr_method: block) and a bootstrap over the independent samples for "
        "the model.",
        "",
    ]
    if grid is not None:
        text += ["## Ramachandran plots (ψ of residue 1, φ of residue 2)", "",
                 f"![Ramachandran grid]({grid.name})", ""]
    write_text_atomic(out / TABLE_NAME, "\n".join(text) + "\n")
    payload = {"split": split, "dataset": dataset, "n_samples": n_samples, "peptides": rows,
               "means": means}
    write_text_atomic(out / JSON_NAME, json.dumps(payload, indent=2, default=json_default) + "\n")
    return EvaluationResult(rows, means, out / TABLE_NAME, grid, out / JSON_NAME)


def ramachandran_grid(results: dict[str, SystemEvaluation], path: Path) -> Path:
    """Ramachandran panels of every molecule: MD (if given), raw model, reweighted."""
    from .molplots import plot_ramachandran_grid

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
