"""A Markdown report of a run: metrics table and figures, next to the run's files."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..io import write_text_atomic
from ..models.base import ModelKind
from ..sampling import HEAVY_TAIL_INDEX, Samples, few_effective_samples, heavy_tail
from ..systems.base import System
from .plots import plot_density_2d, plot_energy_histogram, plot_training_curve

__all__ = ["HTML_NAME", "LABELS", "replace_section", "write_report"]

#: Readable labels of the metrics in ``report.md``.
LABELS = {
    "ess": "ESS (Kish, fraction)",
    "ess_clipped": "ESS, clipped",
    "n_samples": "samples",
    "n_nonfinite": "samples with non-finite weight",
    "nll": "NLL on held-out reference (nats)",
    "nll_train": "NLL on as many training frames (nats)",
    "nll_gap": "held-out − training NLL (nats; large: the flow learned its MD frames, not μ)",
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
    "max_weight": "largest normalized weight",
    "md_phi_pos_visits": "separate visits of the MD reference to φ > 0",
    "ess_tail_index": "Pareto tail index k̂ of the weights (generalized Pareto fit, as PSIS)",
    "log_w_spread": "log-weight spread above the median, σ (nats; ESS → exp(−σ²) if Gaussian)",
    "n_high_energy": "samples above the highest MD energy + margin (weights kept, unclipped)",
    "high_energy_threshold": "that energy threshold (kT)",
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
    """Write ``out/report.md``, the same as one self-contained ``out/report.html`` (figures
    embedded), and their PNG figures (plus ``figures`` already written there); returns the
    Markdown report's path."""
    from .html import markdown_to_html

    out = Path(out)
    shown = _figures(out, system, samples) + list(figures)
    curve = plot_training_curve(out / "train_log.csv", out / "training.png")
    if curve is not None:
        shown.append(("Training curve", curve))
    lines = [f"# boltzflow run: `{system.id}`", ""]
    if system.description:
        lines += [system.description, ""]
    lines += _metrics_table(system, metrics)
    lines += _error_notes(metrics)
    lines += _notes(model, metrics)
    lines += ["", f"Model: {model.describe()}. Full configuration: `config.yaml`.", ""]
    for title, fig in shown:
        lines += [f"## {title}", "", f"![{title}]({fig.name})", ""]
    text = "\n".join(lines) + "\n"
    report = out / "report.md"
    write_text_atomic(report, text)
    write_text_atomic(out / HTML_NAME, markdown_to_html(text, out, title=f"boltzflow: {system.id}"))
    return report


def replace_section(report: Path, heading: str, lines: list[str]) -> None:
    """Put the section ``heading`` + ``lines`` at the end of ``report`` (``report.md``),
    replacing that section and whatever followed it if it is there, and rewrite the HTML
    report beside it (figure paths relative to the report's folder)."""
    from .html import markdown_to_html

    report = Path(report)
    text = report.read_text()
    start = text.find("\n" + heading + "\n")
    if start >= 0:
        text = text[:start + 1]
    text = text.rstrip("\n") + "\n\n" + "\n".join([heading, "", *lines]) + "\n"
    write_text_atomic(report, text)
    first = text.splitlines()[0].lstrip("# ").replace("boltzflow run: ", "").strip("`")
    write_text_atomic(report.with_name(HTML_NAME),
                      markdown_to_html(text, report.parent, title=f"boltzflow: {first}"))


#: The self-contained HTML report beside ``report.md``.
HTML_NAME = "report.html"

#: Readable names of the error-bar methods recorded as ``*_stderr_method``.
METHODS = {
    "bootstrap": "bootstrap over samples",
    "block": "block averaging over time-ordered MD frames",
}


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
        if key.endswith(("_stderr", "_stderr_method")) or key in HIDDEN or value is None:
            continue
        label = labels.get(key, key)
        if key == "ring_closures":
            for ring in value:
                lines.append(f"| ring closure {ring['bond']}: width model / MD (nm) | "
                             f"{ring['model_sd']:.4f} / {ring['md_sd']:.4f} "
                             f"(ratio {ring['ratio']:.2f}) |")
            continue
        if key == "energy_terms":
            for term in value:
                lines.append(f"| energy term {term['term']}: samples / MD (kT), share of the "
                             f"log-weight variance | {term['model_mean']:.2f} / "
                             f"{term['md_mean']:.2f}, {term['share']:.1%} |")
            continue
        if key == "ess_clipped":
            label += f" (largest {metrics['clip_fraction']:.2%} of weights clipped)"
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        if metrics.get(f"{key}_stderr") is not None:
            shown += f" ± {metrics[key + '_stderr']:.2g}"
            method = metrics.get(f"{key}_stderr_method")
            shown += f" ({method})" if method else ""
        if key == "ess" and metrics.get("ess_low") is not None:
            shown = (f"{value:.2%} ({metrics['ess_level']:.0%} interval over draws "
                     f"{metrics['ess_low']:.2%} – {metrics['ess_high']:.2%})")
        lines.append(f"| {label} | {shown} |")
    return lines


#: Fewer separate MD visits to a basin than this, and its ΔF is flagged as resting on few events.
FEW_VISITS = 10

#: Metrics shown within another row (the ESS interval) or not at all.
HIDDEN = ("system", "clip_fraction", "ess_low", "ess_high", "ess_level", "ess_interval_method",
          "high_energy_margin")


def _error_notes(metrics: dict[str, Any]) -> list[str]:
    """Which method each error bar uses, and how the ESS interval is made."""
    methods = sorted({v for k, v in metrics.items() if k.endswith("_stderr_method") and v})
    lines = []
    if methods:
        lines += ["", "**Error bars** (± one standard error): " + "; ".join(
            f"*{m}*: {METHODS.get(m, m)}" for m in methods
        ) + ". Model samples are independent, so a bootstrap over them is sound; MD frames are "
            "correlated in time, and a bootstrap over them would under-report the error by "
            "√(2τ) for a correlation time of τ frames."]
    visits = metrics.get("md_phi_pos_visits")
    if visits is not None and visits < FEW_VISITS:
        lines += ["", f"**Few MD visits to φ > 0 ({visits}).** The MD reference entered the "
                  "φ > 0 basins only a handful of times, so its ΔF rests on those few events: "
                  "its block error cannot see correlations longer than the run, and another MD "
                  "run of the same length may differ by more than it. Run longer MD."]
    if metrics.get("ess_low") is not None:
        lines += ["", f"**ESS interval**: where the Kish ESS of another draw of as many samples "
                  f"would fall ({metrics['ess_level']:.0%}), from a {metrics['ess_interval_method']} "
                  "(a plain bootstrap never draws a weight larger than the largest seen)."
                  + _weight_tail(metrics)]
    return lines


def _weight_tail(metrics: dict[str, Any]) -> str:
    """The largest normalized weight and the tail index, as a sentence (empty if unknown)."""
    out = ""
    if metrics.get("max_weight") is not None:
        out += f" Largest normalized weight: {metrics['max_weight']:.3g}."
    if (tail := metrics.get("ess_tail_index")) is not None:
        out += f" Pareto tail index of the weights: {tail:.2f}" + (
            f" (≥ {HEAVY_TAIL_INDEX}: their variance is infinite, and the ESS of one draw is not "
            "a stable number)." if heavy_tail(tail) else ".")
    if (spread := metrics.get("log_w_spread")) is not None:
        out += (f" Log-weights spread σ = {spread:.2f} nats above their median (84th percentile"
                f" − median): were they Gaussian, the ESS of many samples would be "
                f"exp(−σ²) = {math.exp(-spread ** 2):.2%}; a 10 % ESS needs σ ≲ 1.5, 40 % "
                "σ ≲ 0.96.")
    return out


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
