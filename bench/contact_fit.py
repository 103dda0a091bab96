"""Prototype: keep the flow's samples out of contacts closer than any MD frame.

With the log-weight variance in place of the reverse KL, the flow's samples of a capped
peptide put atoms closer together than MD ever does (``bench/log_w_sources.py``: half the
samples, 3.4 nats lighter), and the Lennard-Jones term explains half the log-weight variance.
This prototype trains the one-command plan's flow (``bench/md_fit.py``'s settings: 6 × [128,
128], 0.25·LV from half-way) with one more term from the same step on: over ``--samples``
reparameterized model samples, ``w · Σ_pairs relu(1 − d_ij / floor_ij)²``, where ``floor_ij``
is the smallest distance of atoms ``i, j`` (more than three bonds apart) over the training
frames. The term acts only on samples inside that floor; the weights stay exact (the
reweighting does not know about it). Then 20,000 samples, evaluated like ``bench/md_fit.py``,
into ``OUT/plan-STEPS-lv0.25-kl0-contactW`` (rank it with ``bench/ess_draws.py``).

    python bench/contact_fit.py --md runs/bench-molecules-v4/peptide-ACE-TRP-GLY-NME/md \\
        --out runs/md-fit-v4 --steps 4200 --w-contact 100
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from boltzflow.models.internal import InternalKind
from boltzflow.systems.encoding import covalent_hops
from boltzflow.threads import set_threads

sys.path.insert(0, str(Path(__file__).parent))
from md_fit import train_sample_evaluate, variant_config  # noqa: E402


def contact_floors(data: torch.Tensor, topology, max_frames: int = 20_000
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pairs ``(i, j)`` more than three bonds apart and their smallest distance over ``data``."""
    i, j = torch.nonzero(torch.triu(covalent_hops(topology) > 3), as_tuple=True)
    frames = data[:: max(1, len(data) // max_frames)]
    floor = torch.full((len(i),), float("inf"), dtype=data.dtype)
    for chunk in frames.split(2048):
        floor = torch.minimum(floor, (chunk[:, i] - chunk[:, j]).norm(dim=-1).amin(0))
    return i, j, floor


def patch(w_contact: float, n_samples: int) -> None:
    """Add the contact hinge to :meth:`InternalKind.loss` (from ``kl_start`` on)."""
    original = InternalKind.loss

    def loss(self, batch, step):
        parts = original(self, batch, step)
        if step < self.params.kl_start:
            parts["contact"] = torch.full((), float("nan"))
            return parts
        if not hasattr(self, "_floors"):
            i, j, floor = contact_floors(self.data, self.system.topology)
            self._floors = (i, j, floor.to(self.data.device, self.data.dtype))
        i, j, floor = self._floors
        x, _ = self.module.sample_and_log_prob(n_samples)
        d = (x[:, i] - x[:, j]).norm(dim=-1)
        hinge = torch.relu(1 - d / floor).square().sum(-1)
        finite = torch.isfinite(hinge)
        parts["contact"] = hinge[finite].mean() if finite.any() else hinge.new_zeros(())
        parts["loss"] = parts["loss"] + w_contact * parts["contact"]
        return parts

    InternalKind.loss = loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", default="peptide:ACE-TRP-GLY-NME")
    parser.add_argument("--md", type=Path, required=True, help="the MD dataset")
    parser.add_argument("--out", type=Path, default=Path("runs/md-fit-v4"))
    parser.add_argument("--steps", type=int, default=4200)
    parser.add_argument("--w-contact", type=float, default=100.0)
    parser.add_argument("--samples", type=int, default=256, help="model samples per step")
    parser.add_argument("-n", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    set_threads(args.threads)
    name = f"plan-{args.steps}-lv0.25-kl0-contact{args.w_contact:g}"
    out = args.out / name
    patch(args.w_contact, args.samples)
    cfg = variant_config(args.system, args.md, args.steps, args.steps // 2, 6, args.n,
                         {"internal.w_lv": 0.25, "internal.w_kl": 0.0})
    m = train_sample_evaluate(cfg, out, args.n)
    print(f"{name}: ESS {m['ess']:.2%} ({m['ess_samples']:.0f} of {args.n}), tail k "
          f"{m['ess_tail_index']:.2f}, valid {m['fraction_valid']:.2%}, high-energy "
          f"{m['n_high_energy']}, NLL {m['nll']:.1f} (gap {m['nll_gap']:.1f}), "
          f"{m['bench_train_seconds']:.0f} s")


if __name__ == "__main__":
    main()
