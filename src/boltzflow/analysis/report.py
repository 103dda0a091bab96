"""A Markdown report of a run: metrics table and figures, next to the run's files."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..io import write_text_atomic
from ..models.base import ModelKind
from ..sampling import Samples, few_effective_samples
from ..systems.base import System
from .plots import plot_density_2d, plot_energy_histogram, plot_training_curve

__all__ = ["LABELS", "write_report"]

#: Readable labels of the metrics in ``report.md``.
LABELS = {
    "ess": "ESS (Kish, fraction)",
    "ess_clipped": "ESS, clipped",
    "n_samples": "samples",
    "n_nonfinite": "samples with non-finite weight",
    "nll": "NLL on held-out reference (nats)",
    "mean_u_model": "mean energy of model samples (kT)",
    "dF_reweighted": "ΔF(B − A), reweighted (kT)",
    "dF_model": "ΔF(B − A), raw model (kT)",
    "dF_exact": "ΔF(B − A), exact quadrature (kT)",
    "fraction_valid": "valid samples (bond graph and Cα chirality)",
    "dF_phi_md": "ΔF(φ>0 − φ<0), MD reference (kT)",
    "dF_phi_model": "ΔF(φ>0 − φ<0), raw model (kT)",
    "dF_phi_reweighted": "ΔF(φ>0 − φ<0), reweighted model (kT)",
    "energy_w2_model": "energy W2, raw model vs MD (kT)",
    "energy_w2_reweighted": "energy W2, reweighted vs MD (kT)",
    "torus_w2_model": "torus W2 (φ, ψ), raw model vs MD (rad)",
    "torus_w2_reweighted": "torus W2 (φ, ψ), reweighted vs MD (rad)",
    "n_mirrored": "D-form samples mirrored to L (E(3)-equivariant CNF)",
    "mean_path_length": "mean integration path length (data units)",
    "n_nll": "held-out samples in the NLL",
    "ess_samples": "effective samples (Kish ESS × samples)",
    "fraction_mirrored": "fraction of samples mirrored",
    "n_invalid_bonds": "samples with a wrong bond graph",
    "n_invalid_chirality": "samples with a D or mixed Cα chirality left",
    "dF_phi_error": "ΔF error, reweighted − MD (kT)",
    "sample_seconds_per_sample": "sampling wall-clock per sample (s)",
}


def write_report(
    out: Path,
    system: System,
    samples: Samples,
    metrics: dict[str, Any],
    *,
    model: ModelKind,
    figures: list[tuple[str, Path]] = (),
) -> Path:
    """Write ``out/report.md`` and its PNG figures (plus ``figures`` already written there);
    returns the report's path."""
    out = Path(out)
    shown = _figures(out, system, samples) + list(figures)
    curve = plot_training_curve(out / "train_log.csv", out / "training.png")
    if curve is not None:
        shown.append(("Training curve", curve))
    lines = [f"# boltzflow run: `{system.id}`", ""]
    if system.description:
        lines += [system.description, ""]
    lines += _metrics_table(system, metrics)
    lines += _notes(model, metrics)
    lines += ["", f"Model: {model.describe()}. Full configuration: `config.yaml`.", ""]
    for title, fig in shown:
        lines += [f"## {title}", "", f"![{title}]({fig.name})", ""]
    report = out / "report.md"
    write_text_atomic(report, "\n".join(lines) + "\n")
    return report


def _figures(out: Path, system: System, samples: Samples) -> list[tuple[str, Path]]:
    """A 2-D toy's density panel and the energy histograms (against the run's held-out data)."""
    figures: list[tuple[str, Path]] = []
    if system.bounds is not None and len(system.bounds) == 2 and system.dim == 2:
        figures.append(("Density: exact, model, reweighted", plot_density_2d(
            system.energy, system.bounds, samples.x, samples.log_w, out / "density.png",
            title=system.id,
        )))
    u_ref = None
    if (out / "data.npz").exists():
        test = torch.from_numpy(np.load(out / "data.npz")["test"]).to(torch.float64)
        with torch.no_grad():
            u_ref = copy.deepcopy(system.energy).to(torch.float64).energy(test)
    figures.append(("Energy histograms", plot_energy_histogram(
        samples.u, samples.log_w, out / "energy_hist.png", u_reference=u_ref,
    )))
    return figures


def _metrics_table(system: System, metrics: dict[str, Any]) -> list[str]:
    """The Markdown table of the metrics with readable labels and their errors."""
    labels = dict(LABELS)
    a, b = system.region_labels
    for key in ("dF_reweighted", "dF_model", "dF_exact"):
        labels[key] = labels[key].replace("B − A", f"{b} − {a}")
    lines = ["| metric | value |", "|---|---|"]
    for key, value in metrics.items():
        if key.endswith("_stderr") or key in ("system", "clip_fraction") or value is None:
            continue
        label = labels.get(key, key)
        if key == "ess_clipped":
            label += f" (largest {metrics['clip_fraction']:.2%} of weights clipped)"
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        if metrics.get(f"{key}_stderr") is not None:
            shown += f" ± {metrics[key + '_stderr']:.2g}"
        lines.append(f"| {label} | {shown} |")
    return lines


def _notes(model: ModelKind, metrics: dict[str, Any]) -> list[str]:
    """Warnings and explanations the numbers need: few effective samples, the mirror fix."""
    lines = []
    if few_effective_samples(metrics.get("ess_samples")):
        lines += [
            "",
            f"**Few effective samples ({metrics['ess_samples']:.1f}).** The importance weights "
            "are dominated by a few samples, so every reweighted number above (and the "
            "reweighted plots) rests on them and is not an estimate to trust; the raw model's "
            "numbers are unaffected.",
        ]
    if "n_mirrored" in metrics:
        lines += [
            "",
            f"**Mirror fix.** {metrics['n_mirrored']} of {metrics['n_samples']} samples had "
            "every Cα in the D-form and were reflected (x → −x) before the validity check, as "
            "in Klein & Noé (2024): the E(3)-equivariant flow cannot tell enantiomers apart, "
            "and both the energy and the model density are invariant under the reflection, so "
            "their weights are unchanged. Samples that stay invalid (wrong bond graph, mixed "
            "chirality) get weight 0 in every reweighted number.",
        ]
    elif "fraction_valid" in metrics:
        lines += [
            "",
            "**Validity.** Samples with a wrong bond graph or a D-Cα (the model's density is "
            "not mirror-symmetric, so no mirror fix applies) get weight 0 in every reweighted "
            "number.",
        ]
    return lines
