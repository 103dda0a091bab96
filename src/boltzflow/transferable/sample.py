"""Zero-shot sampling of one peptide with a transferable BG: samples, exact ``log_q``, weights,
validity (with the mirror fix), the molecular analysis and a report.

The steps, for ``dipeptide:NY`` (seen in training or not):

1. The CNF of the molecule alone (:meth:`TBGModel.flow`): prior → RK4/Dopri5 with the exact
   divergence → ``x`` (nm) and ``log_q`` on the mean-free subspace.
2. ``u`` by the system's TorchForceField (float64, kT) and ``log_w = -u - log_q``.
3. Mirror fix: an E(3)-equivariant flow generates both enantiomers; samples whose Cα
   chiralities are *all* inverted are reflected (``x → -x``). Both ``u`` and ``log_q`` are
   reflection-invariant (the field only sees distances, the prior is isotropic), so the weights
   stay exact. The count is reported.
4. Validity: bond graph inferred from distances equals the topology's, and every Cα is L;
   invalid samples get zero weight (:func:`~boltzflow.analysis.evaluate_molecule`).
5. ESS, ΔF of the φ basins, E-W2 and T-W2 (raw and reweighted; vs MD when frames are given),
   Ramachandran and φ-profile figures, ``metrics.json`` and ``report.md``.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..io import write_text_atomic
from ..sampling import Samples, effective_sample_size_clipped
from .model import TBGModel, describe_solver

__all__ = ["PeptideResult", "analyze_samples", "draw_samples", "sample_peptide"]

SAMPLES_NAME = "samples.npz"
METRICS_NAME = "metrics.json"
REPORT_NAME = "report.md"


@dataclass
class PeptideResult:
    """What :func:`sample_peptide` produced for one peptide.

    Attributes:
        system_id: e.g. ``"dipeptide:NY"``.
        samples: the samples after the mirror fix, with invalid ones at ``log_w = -inf``.
        metrics: JSON-ready metrics (``ess``, ``fraction_valid``, ``n_mirrored``, …).
        angles: ``(phi, psi)`` of the samples (radians).
        reference_angles: ``(phi, psi)`` of the MD frames, or ``None``.
        figures: ``(title, path)`` of the figures written.
    """

    system_id: str
    samples: Samples
    metrics: dict[str, Any]
    angles: tuple[Tensor, Tensor]
    reference_angles: tuple[Tensor, Tensor] | None = None
    figures: list[tuple[str, Path]] = field(default_factory=list)


def draw_samples(
    model: TBGModel,
    system,
    n: int,
    *,
    batch_size: int | None = None,
    seed: int = 0,
    solver=None,
    progress: Callable[[int], None] | None = None,
) -> Samples:
    """``n`` samples of ``system`` with exact ``log_q``, TorchForceField ``u`` and ``log_w``.

    Runs on ``model``'s device; energies in float64. Returns CPU tensors.
    """
    flow = model.flow(system, solver=solver)
    energy = copy.deepcopy(system.energy).to(model.device, torch.float64)
    batch_size = batch_size or model.config.sample_batch
    torch.manual_seed(seed)
    xs, log_qs, us = [], [], []
    done = 0
    with torch.no_grad():
        while done < n:
            m = min(batch_size, n - done)
            x, log_q = flow.sample_and_log_prob(m)
            xs.append(x.cpu())
            log_qs.append(log_q.to(torch.float64).cpu())
            us.append(energy.energy(x.to(torch.float64)).cpu())
            done += m
            if progress is not None:
                progress(done)
    return Samples.from_model(torch.cat(xs), torch.cat(log_qs), torch.cat(us))


def mirror_fix_applies(model) -> bool:
    """Whether ``model``'s samples get the mirror fix: only an E(3) (non-chiral) field's do."""
    return not getattr(model.field, "chiral", False)


def analyze_samples(
    system,
    samples: Samples,
    reference: Tensor | None = None,
    *,
    out_dir: str | Path | None = None,
    seed: int = 0,
    clip_fraction: float = 0.002,
    mirror: bool = True,
) -> PeptideResult:
    """Mirror fix, validity, ESS, ΔF, E-W2, T-W2 (and figures in ``out_dir``) of ``samples``.

    ``mirror``: apply the mirror fix (only valid for a reflection-invariant model density; a
    chiral field's D samples stay invalid instead, see :func:`mirror_fix_applies`).
    """
    from ..analysis.dihedrals import ramachandran_angles
    from ..analysis.molecular import evaluate_molecule
    from ..analysis.validity import MirrorFix, fix_chirality_by_mirroring

    if mirror:
        fix = fix_chirality_by_mirroring(samples.x, system)
    else:
        fix = MirrorFix(x=samples.x, mirrored=torch.zeros(len(samples), dtype=torch.bool, device=samples.x.device))
    result = evaluate_molecule(
        system, fix.x, samples.u, samples.log_w, reference, out_dir=out_dir, seed=seed
    )
    log_w = result.log_w
    m: dict[str, Any] = {
        "system": system.id,
        "n_samples": len(samples),
        "n_mirrored": fix.n_fixed,
        "fraction_mirrored": fix.n_fixed / max(1, len(samples)),
        **result.metrics,
        "ess_samples": result.metrics["ess"] * len(samples),
        "ess_clipped": effective_sample_size_clipped(log_w, clip_fraction),
        "clip_fraction": clip_fraction,
        "n_nonfinite_before_validity": int((~torch.isfinite(samples.log_w)).sum()),
    }
    if m.get("dF_phi_reweighted") is not None and m.get("dF_phi_md") is not None:
        m["dF_phi_error"] = m["dF_phi_reweighted"] - m["dF_phi_md"]
    x = fix.x.detach().cpu().to(torch.float64)
    angles = ramachandran_angles(system, x)
    ref_angles = None
    if reference is not None and len(reference):
        ref_angles = ramachandran_angles(system, reference.detach().cpu().to(torch.float64))
    fixed = Samples(fix.x, samples.log_q, samples.u, log_w)
    return PeptideResult(system.id, fixed, m, angles, ref_angles, list(result.figures))


def sample_peptide(
    model: TBGModel,
    system_id: str,
    n: int,
    *,
    out: str | Path | None = None,
    reference: Tensor | None = None,
    seed: int = 0,
    solver=None,
    batch_size: int | None = None,
    progress: bool = False,
    plots: bool = True,
) -> PeptideResult:
    """Sample ``system_id`` zero-shot, analyze, and (with ``out``) write samples, metrics, report.

    Args:
        model: a trained transferable BG.
        system_id: e.g. ``"dipeptide:NY"``.
        n: number of samples (each with an exact ``log_q``).
        out: directory for ``samples.npz`` (raw model samples), ``metrics.json``,
            ``report.md`` and figures.
        reference: MD frames ``[M, N, 3]`` (nm) for ΔF, E-W2 and T-W2 against MD.
        seed: sampling seed.
        solver: ODE solver (default: the model config's).
        batch_size: samples per chunk (default: the model config's ``sample_batch``).
    """
    from .. import systems

    system = systems.get(system_id)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc=f"sample {system_id}", unit="x", dynamic_ncols=True, disable=None)
    t0 = time.perf_counter()
    try:
        samples = draw_samples(
            model, system, n, seed=seed, solver=solver, batch_size=batch_size,
            progress=(lambda d: bar.update(d - bar.n)) if bar else None,
        )
    finally:
        if bar is not None:
            bar.close()
    sample_s = time.perf_counter() - t0
    out_dir = Path(out) if out is not None else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        samples.save(out_dir / SAMPLES_NAME, system_id=system.id)
    result = analyze_samples(
        system, samples, reference, out_dir=out_dir if plots else None, seed=seed,
        mirror=mirror_fix_applies(model),
    )
    result.metrics["sample_seconds"] = sample_s
    result.metrics["sample_seconds_per_sample"] = sample_s / n
    if out_dir is not None:
        write_text_atomic(out_dir / METRICS_NAME, json.dumps(result.metrics, indent=2) + "\n")
        write_peptide_report(out_dir / REPORT_NAME, model, result)
    return result


#: Below this many effective samples a peptide's reweighted numbers rest on a handful of
#: samples (one carries all the weight at 1); reports and tables say so.
FEW_EFFECTIVE_SAMPLES = 10

_LABELS = {
    "n_samples": "samples (each with exact log q)",
    "n_mirrored": "samples mirrored (all Cα were D; x → −x)",
    "fraction_valid": "valid samples (bond graph and L-Cα, after the mirror fix if it applies)",
    "n_invalid_bonds": "samples with a wrong bond graph",
    "n_invalid_chirality": "samples with a D or mixed Cα chirality left",
    "ess": "ESS (Kish, fraction of all samples; invalid ones weigh 0)",
    "ess_samples": "effective samples (Kish ESS × samples)",
    "ess_clipped": "ESS, clipped",
    "dF_phi_md": "ΔF(φ>0 − φ<0), MD (kT)",
    "dF_phi_model": "ΔF(φ>0 − φ<0), raw model (kT)",
    "dF_phi_reweighted": "ΔF(φ>0 − φ<0), reweighted model (kT)",
    "dF_phi_error": "ΔF error, reweighted − MD (kT)",
    "energy_w2_model": "E-W2, raw model vs MD (kT)",
    "energy_w2_reweighted": "E-W2, reweighted vs MD (kT)",
    "torus_w2_model": "T-W2 (φ, ψ), raw model vs MD (rad)",
    "torus_w2_reweighted": "T-W2 (φ, ψ), reweighted vs MD (rad)",
    "sample_seconds_per_sample": "sampling wall-clock per sample (s)",
}


def write_peptide_report(path: Path, model: TBGModel, result: PeptideResult) -> Path:
    """``report.md`` for one sampled peptide: metrics table, the mirror fix, figures."""
    m = result.metrics
    seen = result.system_id.partition(":")[2] in set(model.metadata.get("train_sequences", []))
    lines = [
        f"# Transferable BG samples: `{result.system_id}`",
        "",
        f"{'Seen' if seen else 'Not seen'} in training. Model: PeptideEGNN "
        f"{model.field.n_layers} × {model.field.hidden}, trained {model.metadata.get('step')} "
        f"steps on {len(model.metadata.get('train_sequences', []))} peptides; sampling: "
        f"{describe_solver(model.config)}.",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    for key, label in _LABELS.items():
        if key not in m or m[key] is None:
            continue
        value = m[key]
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        if f"{key}_stderr" in m and m[f"{key}_stderr"] is not None:
            shown += f" ± {m[key + '_stderr']:.2g}"
        lines.append(f"| {label} | {shown} |")
    if m.get("ess_samples") is not None and m["ess_samples"] < FEW_EFFECTIVE_SAMPLES:
        lines += [
            "",
            f"**Few effective samples ({m['ess_samples']:.1f}).** The importance weights are "
            "dominated by a few samples, so every reweighted number above (ΔF rw, E-W2 rw, "
            "T-W2 rw, the reweighted plots) rests on them and is not an estimate to trust; the "
            "raw model's numbers are unaffected.",
        ]
    if not mirror_fix_applies(model):
        lines += [
            "",
            "**No mirror fix.** The field is chiral (SE(3)- but not reflection-equivariant), "
            "so its density is not mirror-symmetric and reflecting a sample would change its "
            "log q: samples with any D-Cα count as invalid. Invalid samples (wrong bond graph, "
            "D or mixed chirality) get weight 0 in every reweighted number.",
            "",
        ]
    else:
        lines += [
            "",
            f"**Mirror fix.** {m['n_mirrored']} of {m['n_samples']} samples had every Cα in the "
        "D-form and were reflected (x → −x) before the validity check, as in Klein & Noé "
        "(2024): the equivariant flow cannot tell enantiomers apart, and both the force-field "
        "energy and the model density are invariant under the reflection, so their weights "
        "are unchanged. Samples that stay invalid (wrong bond graph, mixed chirality) get "
        "weight 0 in every reweighted number.",
            "",
        ]
    for title, fig in result.figures:
        lines += [f"## {title}", "", f"![{title}]({fig.name})", ""]
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path
