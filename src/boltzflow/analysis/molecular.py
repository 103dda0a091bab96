"""Evaluation of model samples of a molecule against MD reference data.

Invalid samples (broken bond graph or flipped Cα chirality, see :mod:`.validity`) are excluded
from every reweighted estimate: their log weight is set to ``-inf`` before ESS, ΔF, W2 and
profiles are computed; the fraction of valid samples is reported.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..sampling.reweight import effective_sample_size
from ..systems.molecule import MolecularSystem
from .dihedrals import ramachandran_angles
from .free_energy import FreeEnergyDifference
from .pmf import basin_free_energy_difference, free_energy_profile
from .validity import mask_invalid, validity
from .wasserstein import energy_w2, torus_w2


@dataclass
class MolecularEvaluation:
    """Metrics (JSON-ready), the masked log weights and the figures written."""

    metrics: dict[str, Any]
    log_w: Tensor
    figures: list[tuple[str, Path]] = field(default_factory=list)


def _reference_energies(system: MolecularSystem, x: Tensor) -> Tensor:
    energy = copy.deepcopy(system.energy).to(torch.float64)
    with torch.no_grad():
        return torch.cat([energy.energy(c) for c in torch.split(x.to(torch.float64), 5000)])


def evaluate_molecule(
    system: MolecularSystem, x: Tensor, u: Tensor, log_w: Tensor, reference: Tensor | None, *,
    out_dir: str | Path | None = None, seed: int = 0,
) -> MolecularEvaluation:
    """Validity, ESS over valid samples, ΔF of the φ basins, E-W2 and T-W2 (raw and reweighted).

    Args:
        system: a :class:`~boltzflow.systems.MolecularSystem`.
        x: model samples ``[B, n_atoms, 3]`` (nm); ``u``/``log_w``: their energies and weights.
        reference: MD frames ``[M, n_atoms, 3]`` or ``None``.
        out_dir: where to write the Ramachandran and φ-profile figures (none if ``None``).
    """
    x = x.detach().cpu().to(torch.float64)
    report = validity(x, system)
    log_w = mask_invalid(log_w.detach().cpu().to(torch.float64), report.valid)
    raw = torch.where(report.valid, torch.zeros_like(log_w), torch.full_like(log_w, -torch.inf))
    phi, psi = ramachandran_angles(system, x)
    m: dict[str, Any] = {
        "fraction_valid": report.fraction_valid,
        "n_invalid_bonds": int((~report.bonds_ok).sum()),
        "n_invalid_chirality": int((~report.chirality_ok).sum()),
        "ess": effective_sample_size(log_w),
    }
    for name, lw in (("model", raw), ("reweighted", log_w)):
        try:
            m.update(_df_metrics(f"dF_phi_{name}", basin_free_energy_difference(phi, lw, seed=seed)))
        except ValueError:
            m[f"dF_phi_{name}"] = None
    figures: list[tuple[str, Path]] = []
    ref_angles = None
    if reference is not None and len(reference):
        ref = reference.detach().cpu().to(torch.float64)
        u_ref = _reference_energies(system, ref)
        ref_phi, ref_psi = ramachandran_angles(system, ref)
        ref_angles = (ref_phi, ref_psi)
        m["md_phi_pos_visits"] = _visits(ref_phi >= 0)
        try:  # MD frames are in time order: block errors (a bootstrap under-reports them)
            m.update(_df_metrics("dF_phi_md", basin_free_energy_difference(ref_phi, time_ordered=True)))
        except ValueError:
            m["dF_phi_md"] = None
        u_model = u.detach().cpu().to(torch.float64)
        m.update(high_energy_count(u_model, u_ref))
        m["ring_closures"] = ring_closure_widths(system, x[report.valid], ref) or None
        m["energy_terms"] = energy_term_sources(system, x[report.valid],
                                                log_w[report.valid], ref)
        angles = torch.stack([phi, psi], -1)
        ref_ang = torch.stack([ref_phi, ref_psi], -1)
        for name, lw in (("model", raw), ("reweighted", log_w)):
            if torch.isfinite(lw).any():
                m[f"energy_w2_{name}"] = energy_w2(u_model, u_ref, log_w_a=lw)
                m[f"torus_w2_{name}"] = torus_w2(angles, ref_ang, log_w_a=lw, seed=seed)
    if out_dir is not None:
        figures = _figures(Path(out_dir), phi, psi, raw, log_w, ref_angles)
    return MolecularEvaluation(metrics=m, log_w=log_w, figures=figures)


#: A model sample counts as high-energy above the highest MD frame's energy plus this (kT).
HIGH_ENERGY_MARGIN = 20.0


def high_energy_count(u_model: Tensor, u_ref: Tensor, margin: float = HIGH_ENERGY_MARGIN
                      ) -> dict[str, Any]:
    """How many samples lie above ``max(u_ref) + margin`` (non-finite energies included): the
    catastrophic tail that a handful of samples make of a flow's energies."""
    threshold = float(u_ref.max()) + margin
    high = ~(u_model <= threshold)  # NaN counts as high
    return {"n_high_energy": int(high.sum()), "high_energy_threshold": threshold,
            "high_energy_margin": margin}


def ring_closure_widths(system: MolecularSystem, x: Tensor, reference: Tensor
                        ) -> list[dict[str, Any]]:
    """Standard deviation of each ring's closing bond (the bond a plain Z-matrix leaves
    implicit) in model samples ``x`` and in MD ``reference``, with their ratio."""
    from ..transforms import build_zmatrix

    zm = build_zmatrix(system.topology, ring_closures=True)
    atoms = list(system.topology.atoms)
    out = []
    for i, _, k, _ in zm.rows[zm.closures].tolist():
        sd = [float((y[:, i] - y[:, k]).norm(dim=-1).std()) if len(y) > 1 else math.nan
              for y in (x, reference)]
        a, b = atoms[i], atoms[k]
        out.append({"bond": f"{a.residue.name}{a.residue.resSeq}:{a.name}-{b.name}",
                    "model_sd": sd[0], "md_sd": sd[1], "ratio": sd[0] / sd[1]})
    return out


#: Samples whose log weight lies more than this below the median (kT) are left out of
#: :func:`energy_term_sources`: the near-zero weights of a few clashes would set every variance.
SOURCE_WINDOW = 15.0


def energy_term_sources(system: MolecularSystem, x: Tensor, log_w: Tensor, reference: Tensor,
                        *, max_frames: int = 5000) -> list[dict[str, Any]] | None:
    """Where the log-weights spread: each force-field term's mean and sd in the samples and in
    MD (kT), and the share of the log-weight variance that a straight line in the term explains.

    A term whose samples sit above MD's and whose share is large is where the flow puts mass
    the force field does not (on the capped peptides: Lennard-Jones contacts across the peptide
    bonds, docs/benchmarks.md). Over the samples within :data:`SOURCE_WINDOW` of the median
    log weight and at most ``max_frames`` samples and MD frames (evenly spaced); the last
    entry, ``"all terms"``, is the share a linear fit in all terms explains. ``None`` where
    the system has no OpenMM force field or too few samples.

    Args:
        system: the molecule (its ``openmm_system`` gives the terms).
        x: model samples ``[B, n_atoms, 3]`` (nm), ``log_w`` their log weights ``[B]``.
        reference: MD frames ``[M, n_atoms, 3]``.
    """
    from ..conventions import kT
    from ..energies.forcefield import TorchForceField

    if getattr(system, "openmm_system", None) is None:
        return None
    finite = torch.isfinite(log_w)
    if int(finite.sum()) < 3:
        return None
    keep = finite & (log_w > log_w[finite].median() - SOURCE_WINDOW)
    step = max(1, -(-int(keep.sum()) // max_frames))
    x, log_w = x[keep][::step], log_w[keep][::step]
    if len(x) < 3 or float(log_w.var()) == 0.0:
        return None
    reference = reference[:: max(1, -(-len(reference) // max_frames))]
    ff = TorchForceField(system.openmm_system, system.temperature).to(torch.float64)
    kt = kT(system.temperature)
    with torch.no_grad():
        model = {k: v / kt for k, v in ff.terms(x.to(torch.float64)).items()}
        md = {k: v / kt for k, v in ff.terms(reference.to(torch.float64)).items()}
    lw = log_w.to(torch.float64)
    out = []
    for name, values in model.items():
        out.append(_term_entry(name, values, md[name], _r2(values[:, None], lw)))
    columns = torch.stack(list(model.values()), 1)
    out.append(_term_entry("all terms", columns.sum(1), torch.stack(list(md.values()), 1).sum(1),
                           _r2(columns, lw)))
    return out


def _term_entry(name: str, model: Tensor, md: Tensor, share: float) -> dict[str, Any]:
    return {"term": name, "model_mean": float(model.mean()), "model_sd": float(model.std()),
            "md_mean": float(md.mean()), "md_sd": float(md.std()), "share": share}


def _r2(columns: Tensor, y: Tensor) -> float:
    """Share of the variance of ``y`` that a least-squares fit in ``columns`` (+ a constant)
    explains."""
    design = torch.cat([columns - columns.mean(0), torch.ones(len(y), 1, dtype=y.dtype)], 1)
    coef = torch.linalg.lstsq(design, y[:, None]).solution
    residual = y - (design @ coef)[:, 0]
    return float(max(0.0, 1.0 - residual.var() / y.var()))


def _visits(inside: Tensor) -> int:
    """Separate visits of a time series ``[T]`` (bool) to a region: its entries into it."""
    return int(inside[0]) + int((inside[1:] & ~inside[:-1]).sum()) if len(inside) else 0


def _df_metrics(key: str, df: FreeEnergyDifference) -> dict[str, Any]:
    """``key``, ``key_stderr`` and ``key_stderr_method`` of a free-energy difference."""
    return {key: df.value, f"{key}_stderr": df.stderr, f"{key}_stderr_method": df.method}


def _figures(
    out: Path, phi: Tensor, psi: Tensor, raw: Tensor, log_w: Tensor,
    ref_angles: tuple[Tensor, Tensor] | None,
) -> list[tuple[str, Path]]:
    from .molplots import plot_free_energy_profiles, plot_ramachandran

    panels = []
    if ref_angles is not None:
        panels.append(("MD", ref_angles[0], ref_angles[1], None))
    panels += [("model", phi, psi, raw), ("reweighted model", phi, psi, log_w)]
    figures = [("Ramachandran: MD, model, reweighted", plot_ramachandran(panels, out / "ramachandran.png"))]
    profiles = []
    edges = torch.linspace(-torch.pi, torch.pi, 61, dtype=torch.float64)
    if ref_angles is not None:
        profiles.append(("MD", free_energy_profile(ref_angles[0], None, bins=edges,
                                                   time_ordered=True)))
    if torch.isfinite(log_w).any():
        profiles.append(("reweighted model", free_energy_profile(phi, log_w, bins=edges)))
    if profiles:
        figures.append(("Free energy along φ", plot_free_energy_profiles(profiles, out / "phi_profile.png")))
    return figures
