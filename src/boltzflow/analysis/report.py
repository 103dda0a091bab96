"""A Markdown report of a run: metrics table and figures, next to the run's files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..io import write_text_atomic
from .plots import plot_density_2d, plot_energy_histogram, plot_training_curve

_BASE_LABELS = {
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
}


def write_report(
    run, samples, metrics: dict[str, Any], extra_figures: list[tuple[str, Path]] = ()
) -> Path:
    """Write ``report.md`` and its PNG figures into the run directory; returns the report path."""
    labels = dict(_BASE_LABELS)
    path = Path(run.path)
    figures: list[tuple[str, Path]] = []
    system = run.system
    if system.bounds is not None and len(system.bounds) == 2 and system.dim == 2:
        figures.append(("Density: exact, model, reweighted", plot_density_2d(
            system.energy, system.bounds, samples.x, samples.log_w, path / "density.png",
            title=system.id,
        )))
    u_ref = None
    data_path = path / "data.npz"
    if data_path.exists():
        test = torch.from_numpy(np.load(data_path)["test"]).to(torch.float64)
        import copy

        with torch.no_grad():
            u_ref = copy.deepcopy(system.energy).to(torch.float64).energy(test)
    figures.append(("Energy histograms", plot_energy_histogram(
        samples.u, samples.log_w, path / "energy_hist.png", u_reference=u_ref,
    )))
    figures.extend(extra_figures)
    curve = plot_training_curve(path / "train_log.csv", path / "training.png")
    if curve is not None:
        figures.append(("Training curve", curve))

    a, b = system.region_labels
    for key in ("dF_reweighted", "dF_model", "dF_exact"):
        labels[key] = labels[key].replace("B − A", f"{b} − {a}")
    lines = [f"# boltzflow run: `{system.id}`", ""]
    if system.description:
        lines += [system.description, ""]
    lines += ["| metric | value |", "|---|---|"]
    for key, value in metrics.items():
        if key.endswith("_stderr") or key in ("system", "clip_fraction"):
            continue
        label = labels.get(key, key)
        if key == "ess_clipped":
            label += f" (largest {metrics['clip_fraction']:.2%} of weights clipped)"
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        if f"{key}_stderr" in metrics:
            shown += f" ± {metrics[key + '_stderr']:.2g}"
        lines.append(f"| {label} | {shown} |")
    cfg = run.config
    model = (f"Model: {cfg.n_layers} {cfg.model} coupling layers, hidden {cfg.hidden}; "
             f"{cfg.steps} steps, loss = {cfg.w_nll:g}·NLL + {cfg.w_kl:g}·reverse KL.")
    if cfg.model == "cnf":
        model = (f"Model: continuous flow, vector field {cfg.cnf_layers} × {cfg.cnf_hidden} "
                 f"trained by flow matching ({cfg.pairing} pairing, σ = {cfg.sigma:g}) for "
                 f"{cfg.steps} steps; {cfg.solver} ({cfg.solver_steps} steps) with the "
                 f"{cfg.divergence} divergence.")
    lines += ["", f"{model} Full configuration: `config.yaml`.", ""]
    for title, fig in figures:
        lines += [f"## {title}", "", f"![{title}]({fig.name})", ""]
    report = path / "report.md"
    write_text_atomic(report, "\n".join(lines) + "\n")
    return report
