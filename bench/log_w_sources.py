"""Where do a molecule run's log-weights spread? Force-field terms, close contacts, torsions.

    python bench/log_w_sources.py runs/bench-molecules-v4/peptide-ACE-TRP-GLY-NME
    python bench/log_w_sources.py RUN [RUN ...] --pairs 10 --top 20

For a trained single-molecule run (``samples.npz`` with ``log_w``, the MD frames of
``data.npz``), over the samples whose log-weight lies within 15 nats of the median (the
near-zero weights of clashing samples would dominate every variance otherwise):

1. **Force-field terms**: each term's mean ± sd in the flow's samples and in MD (kT), and the
   share of the log-weight variance it explains (r² of a straight-line fit), then all terms
   together. A term whose samples sit above MD and whose r² is large is where the flow puts
   mass that the force field does not.
2. **Close contacts**: for every pair of atoms more than three bonds apart, MD's 0.1 %
   quantile of their distance; the share of samples with at least one pair closer than that,
   the mean log-weight of those samples minus the others', and the pairs most often too close.
3. **Torsions**: φ, ψ, χ1, χ2 of each residue: the share of the log-weight variance that the
   torsion's 12 bins explain (between-bin variance) — small shares mean the flow has the
   conformer populations right and the spread comes from elsewhere.
4. **The largest weights** (all samples): the share of the total weight that the ``--top``
   largest carry, and for each torsion the 30° bin that holds most of that weight, with the
   fraction of MD frames and of the flow's samples in it. A bin MD visits far more often than
   the flow is a conformer the flow under-populates: its few samples carry the tail that sets
   the ESS.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

KEEP_NATS = 15.0  # = boltzflow.analysis.molecular.SOURCE_WINDOW
QUANTILE = 0.001


def terms_section(run, x: torch.Tensor, md: torch.Tensor, log_w: np.ndarray) -> list[str]:
    from boltzflow.analysis.molecular import energy_term_sources

    sources = energy_term_sources(run.system, x, torch.from_numpy(log_w).double(), md,
                                  max_frames=len(x) + len(md))
    lines = ["| term | samples (kT) | MD (kT) | r² with log w |", "|---|---|---|---|"]
    for t in sources:
        means = ("", "") if t["term"] == "all terms" else (
            f"{t['model_mean']:.2f} ± {t['model_sd']:.2f}", f"{t['md_mean']:.2f} ± {t['md_sd']:.2f}")
        shown = "all terms (linear)" if t["term"] == "all terms" else t["term"]
        lines.append(f"| {shown} | {means[0]} | {means[1]} | {t['share']:.1%} |")
    return lines


def contacts_section(topology, x: np.ndarray, md: np.ndarray, log_w: np.ndarray,
                     n_pairs: int) -> list[str]:
    from boltzflow.systems.encoding import covalent_hops

    hops = covalent_hops(topology, max_hops=topology.n_atoms).numpy()
    i, j = np.nonzero(np.triu(hops > 3))
    def distances(frames: np.ndarray) -> np.ndarray:
        return np.linalg.norm(frames[:, i] - frames[:, j], axis=-1)
    ds, dm = distances(x), distances(md)
    floor = np.quantile(dm, QUANTILE, axis=0)
    close = ds < floor
    any_close = close.any(1)
    names = [f"{a.residue}:{a.name}" for a in topology.atoms]
    lines = [
        f"{any_close.mean():.1%} of the samples have a pair (of {len(i)} more than three bonds "
        f"apart) closer than MD's {QUANTILE:.1%} quantile of its distance (MD: "
        f"{(dm < floor).any(1).mean():.1%}); their mean log w is "
        f"{log_w[any_close].mean() - log_w[~any_close].mean():+.2f} nats from the others'.",
        "",
        "| pair | bonds apart | MD floor (nm) | samples closer | their log w − others' |",
        "|---|---|---|---|---|",
    ]
    for k in np.argsort(-close.mean(0))[:n_pairs]:
        c = close[:, k]
        lines.append(f"| {names[i[k]]} – {names[j[k]]} | {hops[i[k], j[k]]} | {floor[k]:.3f} | "
                     f"{c.mean():.2%} | {log_w[c].mean() - log_w[~c].mean():+.2f} |")
    return lines


def torsions_section(topology, x: np.ndarray, log_w: np.ndarray) -> list[str]:
    import mdtraj

    traj = mdtraj.Trajectory(x, topology)
    lines = ["| torsion | share of log-w variance (12 bins) |", "|---|---|"]
    edges = np.linspace(-np.pi, np.pi, 13)
    for compute, label in ((mdtraj.compute_phi, "φ"), (mdtraj.compute_psi, "ψ"),
                           (mdtraj.compute_chi1, "χ1"), (mdtraj.compute_chi2, "χ2")):
        idx, angles = compute(traj)
        for k in range(angles.shape[1]):
            b = np.clip(np.digitize(angles[:, k], edges) - 1, 0, 11)
            counts = np.bincount(b, minlength=12)
            sums = np.bincount(b, weights=log_w, minlength=12)
            used = counts > 0
            means = sums[used] / counts[used]
            between = np.sum(counts[used] * (means - log_w.mean()) ** 2) / counts.sum()
            residue = topology.atom(int(idx[k][1])).residue
            lines.append(f"| {label} {residue} | {between / log_w.var():.1%} |")
    return lines


def tail_section(run, x: np.ndarray, md: np.ndarray, log_w: np.ndarray, n_top: int) -> list[str]:
    import mdtraj

    from boltzflow.conventions import kT
    from boltzflow.energies.forcefield import TorchForceField

    topology = run.system.topology
    finite = np.isfinite(log_w)
    w = np.exp(log_w[finite] - log_w[finite].max())
    top = np.argsort(w)[::-1][:n_top]
    share = w[top].sum() / w.sum()
    ff = TorchForceField(run.system.openmm_system, run.system.temperature).to(torch.float64)
    with torch.no_grad():
        terms = {k: (v / kT(run.system.temperature)).numpy()
                 for k, v in ff.terms(torch.from_numpy(x[finite])).items()}
    term_lines = ["| term | the largest weights' samples (kT) | all samples: median (kT) |",
                  "|---|---|---|"]
    term_lines += [f"| {k} | {v[top].mean():.2f} | {np.median(v):.2f} |" for k, v in terms.items()]
    sample_traj, md_traj = mdtraj.Trajectory(x[finite], topology), mdtraj.Trajectory(md, topology)
    edges = np.linspace(-np.pi, np.pi, 13)
    rows = []
    for compute, label in ((mdtraj.compute_phi, "φ"), (mdtraj.compute_psi, "ψ"),
                           (mdtraj.compute_chi1, "χ1"), (mdtraj.compute_chi2, "χ2")):
        idx, angles = compute(sample_traj)
        md_angles = compute(md_traj)[1]
        for k in range(angles.shape[1]):
            b = np.clip(np.digitize(angles[:, k], edges) - 1, 0, 11)
            b_md = np.clip(np.digitize(md_angles[:, k], edges) - 1, 0, 11)
            top_weight = np.bincount(b[top], weights=w[top], minlength=12)
            j = int(np.argmax(top_weight))
            p_md, p_flow = np.mean(b_md == j), np.mean(b == j)
            residue = topology.atom(int(idx[k][1])).residue
            rows.append((p_md / max(p_flow, 1e-12), f"| {label} {residue} | "
                         f"{np.degrees(edges[j]):.0f}° to {np.degrees(edges[j + 1]):.0f}° | "
                         f"{top_weight[j] / w[top].sum():.0%} | {p_md:.2%} | {p_flow:.2%} |"))
    rows.sort(key=lambda r: -r[0])
    return [f"The {n_top} largest weights carry {share:.1%} of the total weight "
            f"(all {finite.sum()} finite samples). Their energy terms (a sample's weight grows "
            "as its energy falls and as the flow's density there falls):", "", *term_lines, "",
            "Where they sit, most under-populated first:",
            "", "| torsion | bin of most of their weight | their weight in it | MD frames in it | "
            "flow samples in it |", "|---|---|---|---|---|", *(r[1] for r in rows)]


def report(path: Path, n_pairs: int, n_top: int = 20) -> str:
    from boltzflow import runs

    run = runs.load_run(path)
    samples = np.load(path / "samples.npz")
    log_w = samples["log_w"]
    keep = np.isfinite(log_w) & (log_w > np.median(log_w[np.isfinite(log_w)]) - KEEP_NATS)
    x_all = samples["x"].astype(np.float64)  # energy_term_sources keeps the same samples
    x, log_w_all, log_w = x_all[keep], log_w, log_w[keep]
    data = np.load(path / runs.DATA_NAME)
    md = np.concatenate([data["train"], data["test"]]).astype(np.float64)
    md = md[:: max(1, len(md) // 20_000)]
    topology = run.system.topology
    lines = [
        f"## {path} ({run.system.id})",
        "",
        f"{keep.sum()} of {len(keep)} samples within {KEEP_NATS:g} nats of the median log w; "
        f"their log w sd {log_w.std():.2f} nats; {len(md)} MD frames.",
        "",
        *terms_section(run, torch.from_numpy(x_all), torch.from_numpy(md), log_w_all),
        "",
        *contacts_section(topology, x, md, log_w, n_pairs),
        "",
        *torsions_section(topology, x, log_w),
        "",
        *tail_section(run, x_all, md, log_w_all, n_top),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--pairs", type=int, default=8, help="closest-contact pairs to list")
    parser.add_argument("--top", type=int, default=20, help="largest weights to place")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for path in args.runs:
        print(report(path, args.pairs, args.top) + "\n", flush=True)


if __name__ == "__main__":
    main()
