"""Figures written as PNG: 2-D densities, energy histograms and training curves.

matplotlib is imported lazily (Agg backend), so ``import boltzflow`` stays light.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from ..energies.base import Energy

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def pyplot() -> ModuleType:
    """``matplotlib.pyplot`` on the file-only Agg backend, imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def sample_weights(log_w: Tensor) -> np.ndarray:
    """Normalized weights ``[B]`` (float64, sum 1) from log weights ``[B]``; NaN counts as 0."""
    w = torch.softmax(log_w.double(), 0)
    return torch.nan_to_num(w, nan=0.0).numpy()


def plot_density_2d(
    energy: Energy,
    bounds: Sequence[tuple[float, float]],
    x: Tensor,
    log_w: Tensor,
    path: str | Path,
    *,
    bins: int = 80,
    title: str = "",
) -> Path:
    """Exact density ``exp(-u)`` vs model samples vs reweighted samples on a 2-D target."""
    plt = pyplot()
    (x0, x1), (y0, y1) = bounds
    gx, gy = np.linspace(x0, x1, 200), np.linspace(y0, y1, 200)
    grid = torch.tensor(np.stack(np.meshgrid(gx, gy, indexing="ij"), -1).reshape(-1, 2))
    import copy

    energy = copy.deepcopy(energy).to(torch.float64)
    with torch.no_grad():
        u = energy.energy(grid).reshape(200, 200).numpy()
    p = np.exp(-(u - u.min()))
    xs = x.detach().double().reshape(len(x), -1)[:, :2].numpy()
    rng = [[x0, x1], [y0, y1]]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharex=True, sharey=True)
    axes[0].imshow(p.T, origin="lower", extent=(x0, x1, y0, y1), aspect="auto", cmap="viridis")
    axes[0].set_title("exact exp(-u)")
    axes[1].hist2d(xs[:, 0], xs[:, 1], bins=bins, range=rng, cmap="viridis")
    axes[1].set_title(f"model samples (n={len(xs)})")
    axes[2].hist2d(xs[:, 0], xs[:, 1], bins=bins, range=rng, weights=sample_weights(log_w), cmap="viridis")
    axes[2].set_title("reweighted samples")
    for ax in axes:
        ax.set_xlabel("x1")
    axes[0].set_ylabel("x2")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_energy_histogram(
    u_model: Tensor, log_w: Tensor, path: str | Path, *, u_reference: Tensor | None = None,
    bins: int = 80, seed: int = 0,
) -> Path:
    """Histograms of reduced energies: reference data, model samples, reweighted samples.

    The raw model's histogram uses as many samples as the reference (a seeded subset when it
    has more), so the two curves are equally noisy; the legend gives each curve's sample count,
    the reweighted one its Kish effective samples.
    """
    plt = pyplot()
    finite = torch.isfinite(u_model) & torch.isfinite(log_w)
    um = u_model[finite].double().numpy()
    if len(um) == 0:  # no finite weight (e.g. every generated molecule invalid): raw energies
        um = u_model[torch.isfinite(u_model)].double().numpy()
    lo, hi = np.percentile(um, [0.5, 99.5])
    raw = um
    if u_reference is not None:
        ur = u_reference.double().numpy()
        lo, hi = min(lo, np.percentile(ur, 0.5)), max(hi, np.percentile(ur, 99.5))
        if len(um) > len(ur):
            raw = np.random.default_rng(seed).choice(um, len(ur), replace=False)
    fig, ax = plt.subplots(figsize=(6, 4))
    kw = {"bins": bins, "range": (lo, hi), "density": True, "histtype": "step", "linewidth": 1.5}
    if u_reference is not None:
        ax.hist(ur, label=f"reference (n={len(ur)})", color="black", **kw)
    shown = f"n={len(raw)}" + (f" of {len(um)}" if len(raw) < len(um) else "")
    ax.hist(raw, label=f"model ({shown})", color="tab:blue", **kw)
    if finite.any():
        w = sample_weights(log_w[finite])
        ax.hist(um, weights=w, label=f"reweighted (ESS n={1 / np.square(w).sum():.1f})",
                color="tab:orange", **kw)
    ax.set_xlabel("reduced energy u (kT)")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_training_curve(log_csv: str | Path, path: str | Path) -> Path | None:
    """Loss and its parts over training steps from ``train_log.csv``."""
    log_csv = Path(log_csv)
    if not log_csv.exists():
        return None
    with log_csv.open() as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    plt = pyplot()
    steps = [int(r["step"]) for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in ("loss", "nll", "kl"):
        if key in rows[0]:
            ax.plot(steps, [float(r[key]) for r in rows], label=key)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` as PNG atomically, close it and return ``path``."""
    from ..io import write_atomic

    path = Path(path)
    write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=110))
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
