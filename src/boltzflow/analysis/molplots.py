"""Molecular figures as PNG: Ramachandran free-energy maps (side by side or a grid of peptides)
and free-energy profiles with error bands.

Energy histograms are :func:`boltzflow.analysis.plots.plot_energy_histogram`. matplotlib is
imported lazily (Agg backend) through :mod:`.plots`, whose atomic ``save_figure`` writes every file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from .plots import pyplot, sample_weights, save_figure
from .pmf import Profile

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.colors import Colormap
    from matplotlib.image import AxesImage

#: ``(title, phi [B], psi [B], log_w [B] or None)``, angles in radians.
RamachandranPanel = tuple[str, Tensor, Tensor, Tensor | None]


def _free_energy_map(phi: Tensor, psi: Tensor, log_w: Tensor | None, bins: int) -> np.ndarray:
    """``F[phi_bin, psi_bin]`` in kT (minimum 0) of a 2-D histogram on [-π, π]²; nan if empty."""
    phi = phi.detach().to("cpu", torch.float64).flatten().numpy()
    psi = psi.detach().to("cpu", torch.float64).flatten().numpy()
    weights = None if log_w is None else sample_weights(log_w.detach().to("cpu").flatten())
    hist, _, _ = np.histogram2d(
        phi, psi, bins=bins, range=[[-math.pi, math.pi]] * 2, weights=weights
    )
    with np.errstate(divide="ignore"):
        f = -np.log(hist)
    f[~np.isfinite(f)] = np.nan
    if np.isfinite(f).any():
        f -= np.nanmin(f)
    return f


def _draw(
    ax: Axes, panel: RamachandranPanel, *, bins: int, f_max: float, degrees: bool,
    cmap: Colormap,
) -> AxesImage:
    title, phi, psi, log_w = panel
    f = _free_energy_map(phi, psi, log_w, bins)
    lim = 180.0 if degrees else math.pi
    image = ax.imshow(
        np.clip(f, 0.0, f_max).T,
        origin="lower",
        extent=(-lim, lim, -lim, lim),
        cmap=cmap,
        vmin=0.0,
        vmax=f_max,
        aspect="equal",
        interpolation="nearest",
    )
    if degrees:
        ticks, labels = [-180, -90, 0, 90, 180], ["-180", "-90", "0", "90", "180"]
    else:
        ticks, labels = (
            [-math.pi, -math.pi / 2, 0, math.pi / 2, math.pi],
            ["−π", "−π/2", "0", "π/2", "π"],
        )
    ax.set_xticks(ticks, labels)
    ax.set_yticks(ticks, labels)
    ax.set_title(f"{title} (n={len(phi)})" if title else f"n={len(phi)}", fontsize=9)
    return image


def _cmap(plt: ModuleType) -> Colormap:
    return plt.get_cmap("viridis").with_extremes(bad="white")


def plot_ramachandran(
    panels: Sequence[RamachandranPanel],
    path: str | Path,
    *,
    bins: int = 60,
    f_max: float = 10.0,
    degrees: bool = False,
) -> Path:
    """Side-by-side Ramachandran maps: free energy ``-log p(φ, ψ)`` (kT, min 0) per panel.

    Args:
        panels: ``(title, phi [B], psi [B], log_w [B] or None)`` each, angles in radians;
            ``log_w`` reweights the histogram (e.g. reweighted model samples).
        path: PNG to write (atomically).
        bins: histogram bins per axis over ``[-π, π]``.
        f_max: top of the colour scale (kT); higher values are shown at ``f_max``, empty bins
            white.
        degrees: label the axes in degrees instead of radians.
    """
    if not panels:
        raise ValueError("plot_ramachandran needs at least one panel")
    plt = pyplot()
    fig, axes = plt.subplots(
        1, len(panels), figsize=(3.6 * len(panels) + 0.8, 3.6), squeeze=False, sharey=True
    )
    cmap = _cmap(plt)
    unit = "°" if degrees else "rad"
    for ax, panel in zip(axes[0], panels):
        image = _draw(ax, panel, bins=bins, f_max=f_max, degrees=degrees, cmap=cmap)
        ax.set_xlabel(f"φ ({unit})")
    axes[0, 0].set_ylabel(f"ψ ({unit})")
    fig.colorbar(image, ax=list(axes[0]), label="free energy (kT)", shrink=0.85)
    return save_figure(fig, path)


def plot_ramachandran_grid(
    entries: Sequence[RamachandranPanel],
    path: str | Path,
    *,
    n_cols: int = 6,
    bins: int = 40,
    f_max: float = 10.0,
    degrees: bool = False,
) -> Path:
    """A grid of small Ramachandran maps, one per entry (e.g. one per test peptide).

    Same entries and colour scale as :func:`plot_ramachandran`; ``n_cols`` panels per row.
    """
    if not entries:
        raise ValueError("plot_ramachandran_grid needs at least one entry")
    plt = pyplot()
    n_cols = max(1, min(n_cols, len(entries)))
    n_rows = math.ceil(len(entries) / n_cols)
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(2.4 * n_cols + 0.8, 2.4 * n_rows), squeeze=False
    )
    cmap = _cmap(plt)
    unit = "°" if degrees else "rad"
    flat = list(axes.flat)
    for ax, entry in zip(flat, entries):
        image = _draw(ax, entry, bins=bins, f_max=f_max, degrees=degrees, cmap=cmap)
        ax.tick_params(labelsize=6)
    for ax in flat[len(entries) :]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel(f"φ ({unit})", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel(f"ψ ({unit})", fontsize=8)
    fig.colorbar(image, ax=flat, label="free energy (kT)", shrink=0.8)
    return save_figure(fig, path)


def plot_free_energy_profiles(
    profiles: Sequence[tuple[str, Profile]],
    path: str | Path,
    *,
    xlabel: str = "φ (rad)",
    f_max: float = 15.0,
) -> Path:
    """Free-energy profiles (kT) as lines with ±1 standard-error bands, one per label.

    Args:
        profiles: ``(label, Profile)`` each, e.g. MD vs reweighted model along φ.
        path: PNG to write (atomically).
        xlabel: label of the coordinate axis.
        f_max: upper end of the free-energy axis (kT); a bin holding one reweighted sample of
            negligible weight would otherwise stretch it to hundreds of kT.
    """
    if not profiles:
        raise ValueError("plot_free_energy_profiles needs at least one profile")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, profile in profiles:
        x = profile.centers.double().numpy()
        f = profile.F.double().numpy().copy()
        err = profile.F_err.double().numpy()
        f[~np.isfinite(f)] = np.nan
        (line,) = ax.plot(x, f, label=label)
        band = np.isfinite(f) & np.isfinite(err)
        ax.fill_between(
            x,
            np.where(band, f - err, np.nan),
            np.where(band, f + err, np.nan),
            color=line.get_color(),
            alpha=0.25,
            linewidth=0,
        )
    ax.set_ylim(top=f_max)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("free energy (kT)")
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)
