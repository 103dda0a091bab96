"""The evaluation of one system's samples, the same for every model kind.

ESS (as a fraction and as a count of samples), clipped ESS, NLL on held-out data, the kind's own
metrics; for molecules the mirror fix (where the model's density allows it), validity, ΔF of
the φ basins, energy and torsion Wasserstein distances against MD; for toys with two regions
ΔF against the exact value. Writes ``metrics.json`` and (with ``plots``) ``report.md`` with its
figures.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..io import write_text_atomic
from ..models.base import ModelKind
from ..sampling import (
    Samples,
    effective_sample_size_clipped,
    effective_sample_size_interval,
    largest_weight,
    log_weight_spread,
)
from ..systems.base import System
from ..systems.molecule import MolecularSystem
from .free_energy import free_energy_difference, free_energy_difference_quadrature
from .metrics import negative_log_likelihood

__all__ = ["SystemEvaluation", "ess_metrics", "evaluate_samples", "json_default"]

METRICS_NAME = "metrics.json"


@dataclass
class SystemEvaluation:
    """The evaluation of one system's samples.

    Attributes:
        system_id: the system's id.
        samples: the samples after the mirror fix, invalid ones at ``log_w = -inf``.
        metrics: JSON-ready metrics (also in ``metrics.json``).
        angles: ``(phi, psi)`` of the samples (radians), molecules only.
        reference_angles: ``(phi, psi)`` of the MD frames, or ``None``.
        figures: ``(title, path)`` of the figures written.
    """

    system_id: str
    samples: Samples
    metrics: dict[str, Any]
    angles: tuple[Tensor, Tensor] | None = None
    reference_angles: tuple[Tensor, Tensor] | None = None
    figures: list[tuple[str, Path]] = field(default_factory=list)

    def summary(self) -> str:
        """One line: ESS, effective samples, the log-weight spread and (molecules) validity and
        T-W2."""
        m = self.metrics
        spread = "" if m.get("log_w_spread") is None else f", σ log w {m['log_w_spread']:.2f}"
        line = f"ESS {m['ess']:.2%} ({m['ess_samples']:.1f} effective samples{spread})"
        if "fraction_valid" in m:
            line += (f", valid {m['fraction_valid']:.1%} ({m.get('n_mirrored', 0)} mirrored), "
                     f"T-W2 {_fmt(m.get('torus_w2_model'))} raw / "
                     f"{_fmt(m.get('torus_w2_reweighted'))} reweighted")
        return line


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def evaluate_samples(
    model: ModelKind,
    system: System,
    samples: Samples,
    out: Path,
    *,
    reference: Tensor | None = None,
    held_out: Tensor | None = None,
    train_frames: Tensor | None = None,
    plots: bool = True,
    seed: int = 0,
    extra: dict[str, Any] | None = None,
) -> SystemEvaluation:
    """Evaluate ``samples`` of ``system`` drawn from ``model``; writes ``out/metrics.json`` and,
    with ``plots``, ``out/report.md`` and its figures.

    Args:
        model: the model that drew them (its flow gives the NLL, its kind the extra metrics and
            whether D-forms may be mirrored).
        system: the system sampled.
        samples: model samples with ``log_q``, ``u`` and ``log_w``.
        out: the directory for metrics, report and figures.
        reference: MD frames ``[M, *event_shape]`` for ΔF, E-W2 and T-W2 against MD.
        held_out: reference samples for the NLL (at most ``sample.n_nll``, evenly spaced).
        train_frames: the frames the model was trained on: as many of them (evenly spaced) as
            held-out frames give ``nll_train`` and ``nll_gap = nll - nll_train``, how much
            better the flow fits frames it saw than new ones (skipped where ``log q`` costs an
            ODE solve per sample).
        plots: write figures and ``report.md``.
        seed: seed of bootstrap errors and W2 subsampling.
        extra: more metrics to record (e.g. sampling time).
    """
    clip = model.config.sample.clip_fraction
    flow = model.flow_for(system)
    m: dict[str, Any] = {"system": system.id, "n_samples": len(samples), **(extra or {})}
    m["n_nonfinite"] = int((~torch.isfinite(samples.log_w)).sum())
    finite_u = samples.u[torch.isfinite(samples.u)]
    m["mean_u_model"] = float(finite_u.mean()) if len(finite_u) else None
    if held_out is not None:
        m.update(_nll(flow, held_out, model, train_frames))
    m.update(model.extra_metrics(flow))
    result = SystemEvaluation(system.id, samples, m)
    if isinstance(system, MolecularSystem):
        result = _molecular(model, system, samples, m, reference, out if plots else None, seed)
    m.update(ess_metrics(result.samples.log_w, seed=seed))
    m["ess_clipped"] = effective_sample_size_clipped(result.samples.log_w, clip)
    m["clip_fraction"] = clip
    m.update(_region_free_energies(system, result.samples))
    write_text_atomic(out / METRICS_NAME, json.dumps(m, indent=2, default=json_default) + "\n")
    if plots:
        from .report import write_report

        write_report(out, system, result.samples, m, model=model, figures=result.figures)
    return result


def ess_metrics(log_w: Tensor, *, seed: int = 0) -> dict[str, Any]:
    """Kish ESS as a fraction and a count, its 90 % interval over draws, the largest
    normalized weight (see :func:`~boltzflow.sampling.effective_sample_size_interval`) and the
    spread of the log-weights (:func:`~boltzflow.sampling.log_weight_spread`)."""
    interval = effective_sample_size_interval(log_w, seed=seed)
    n = log_w.numel()
    finite = torch.isfinite(log_w).any()
    return {
        "ess": interval.ess, "ess_samples": interval.ess * n,
        "ess_low": interval.low, "ess_high": interval.high, "ess_level": interval.level,
        "ess_interval_method": ESS_INTERVAL_METHOD,
        "ess_tail_index": interval.tail_index if math.isfinite(interval.tail_index) else None,
        "max_weight": largest_weight(log_w) if finite else None,
        "log_w_spread": log_weight_spread(log_w) if finite else None,
    }


#: How the ESS interval is computed, as recorded in ``metrics.json``.
ESS_INTERVAL_METHOD = "bootstrap over samples, generalized Pareto tail redrawn"


def _nll(flow: Any, held_out: Tensor, model: ModelKind,
         train_frames: Tensor | None = None) -> dict[str, Any]:
    """NLL of (at most ``sample.n_nll`` evenly spaced) held-out samples; with ``train_frames``
    (and a ``log q`` of one network pass: ``refine_unsupported is None``), also the NLL of as
    many evenly spaced training frames and the gap between the two."""
    out: dict[str, Any] = {}
    limit = model.config.sample.n_nll
    if 0 < limit < len(held_out):
        held_out = held_out[torch.linspace(0, len(held_out) - 1, limit).long()]
        out["n_nll"] = len(held_out)
    like = next(flow.parameters())
    batch_size = model.config.sample.batch_size
    out["nll"] = negative_log_likelihood(flow, held_out.to(like), batch_size=batch_size)
    if train_frames is not None and len(train_frames) and model.refine_unsupported is None:
        pick = torch.linspace(0, len(train_frames) - 1, min(len(held_out), len(train_frames)))
        seen = train_frames[pick.long()].to(like)
        out["nll_train"] = negative_log_likelihood(flow, seen, batch_size=batch_size)
        out["nll_gap"] = out["nll"] - out["nll_train"]
    return out


def _molecular(
    model: ModelKind, system: MolecularSystem, samples: Samples, m: dict[str, Any],
    reference: Tensor | None, out: Path | None, seed: int,
) -> SystemEvaluation:
    """Mirror fix (if the model's density is mirror-symmetric), validity, ΔF, W2, figures."""
    from .dihedrals import ramachandran_angles
    from .molecular import evaluate_molecule
    from .validity import fix_chirality_by_mirroring

    x = samples.x
    if model.mirror_symmetric():
        fix = fix_chirality_by_mirroring(samples.x, system)
        x = fix.x
        m["n_mirrored"] = fix.n_fixed
        m["fraction_mirrored"] = fix.n_fixed / max(1, len(samples))
    mol = evaluate_molecule(system, x, samples.u, samples.log_w, reference, out_dir=out,
                            seed=seed)
    m.update(mol.metrics)
    if m.get("dF_phi_reweighted") is not None and m.get("dF_phi_md") is not None:
        m["dF_phi_error"] = m["dF_phi_reweighted"] - m["dF_phi_md"]
    angles = ramachandran_angles(system, x.detach().cpu().to(torch.float64))
    ref_angles = None
    if reference is not None and len(reference):
        ref_angles = ramachandran_angles(system, reference.detach().cpu().to(torch.float64))
    fixed = Samples(x, samples.log_q, samples.u, mol.log_w)
    return SystemEvaluation(system.id, fixed, m, angles, ref_angles, list(mol.figures))


def _region_free_energies(system: System, samples: Samples) -> dict[str, Any]:
    """ΔF between a toy's two regions: reweighted, raw model and (2-D) exact."""
    if system.in_region_b is None:
        return {}
    out: dict[str, Any] = {}
    in_b = system.in_region_b(samples.x)
    for name, lw in (("dF_reweighted", samples.log_w), ("dF_model", torch.zeros_like(samples.log_w))):
        try:
            df = free_energy_difference(lw, ~in_b, in_b)
            out[name], out[name + "_stderr"] = df.value, df.stderr
            out[name + "_stderr_method"] = df.method
        except ValueError:
            out[name] = None
    if system.bounds is not None and len(system.bounds) == 2:
        out["dF_exact"] = free_energy_difference_quadrature(
            system.energy, system.bounds, lambda g: ~system.in_region_b(g), system.in_region_b,
        )
    return out


def json_default(value: Any) -> Any:
    """JSON form of tensors and non-finite floats."""
    if isinstance(value, Tensor):
        return value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
