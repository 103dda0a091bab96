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


#: Fewest effective samples of a bin drawn in a reweighted Ramachandran panel.
MIN_BIN_SAMPLES = 3.0


def _free_energy_map(
    phi: Tensor, psi: Tensor, log_w: Tensor | None, bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``F[phi_bin, psi_bin]`` in kT (minimum 0, nan if empty) of a 2-D histogram on [-π, π]²,
    the Kish effective samples ``(Σw)² / Σw²`` of each bin and its share of the weight."""
    phi = phi.detach().to("cpu", torch.float64).flatten().numpy()
    psi = psi.detach().to("cpu", torch.float64).flatten().numpy()
    weights = np.ones_like(phi) if log_w is None else sample_weights(log_w.detach().to("cpu").flatten())
    kw = {"bins": bins, "range": [[-math.pi, math.pi]] * 2}
    hist, _, _ = np.histogram2d(phi, psi, weights=weights, **kw)
    hist2, _, _ = np.histogram2d(phi, psi, weights=weights**2, **kw)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = -np.log(hist)
        n_eff = np.where(hist2 > 0, hist**2 / hist2, 0.0)
    f[~np.isfinite(f)] = np.nan
    if np.isfinite(f).any():
        f -= np.nanmin(f)
    return f, n_eff, hist / max(hist.sum(), 1e-300)


def _weighted(log_w: Tensor | None) -> bool:
    """Whether a panel's finite log weights differ (a reweighted panel, not raw samples)."""
    if log_w is None:
        return False
    finite = log_w[torch.isfinite(log_w)]
    return len(finite) > 1 and bool((finite != finite[0]).any())


def _draw(
    ax: Axes, panel: RamachandranPanel, *, bins: int, f_max: float, degrees: bool,
    cmap: Colormap,
) -> AxesImage:
    """One panel; in a reweighted one, bins with fewer than :data:`MIN_BIN_SAMPLES` effective
    samples are grey instead of coloured, and the title says how much weight they hold."""
    title, phi, psi, log_w = panel
    f, n_eff, mass = _free_energy_map(phi, psi, log_w, bins)
    thin = _weighted(log_w) & (n_eff > 0) & (n_eff < MIN_BIN_SAMPLES)
    if thin.any():
        kept = np.where(thin, np.nan, f)
        f = kept - np.nanmin(kept) if np.isfinite(kept).any() else kept
    lim = 180.0 if degrees else math.pi
    extent = (-lim, lim, -lim, lim)
    image = ax.imshow(
        np.clip(f, 0.0, f_max).T, origin="lower", extent=extent, cmap=cmap, vmin=0.0,
        vmax=f_max, aspect="equal", interpolation="nearest",
    )
    if thin.any():
        grey = np.zeros((*thin.T.shape, 4))
        grey[thin.T] = (0.6, 0.6, 0.6, 1.0)
        ax.imshow(grey, origin="lower", extent=extent, aspect="equal", interpolation="nearest")
    if degrees:
        ticks, labels = [-180, -90, 0, 90, 180], ["-180", "-90", "0", "90", "180"]
    else:
        ticks, labels = (
            [-math.pi, -math.pi / 2, 0, math.pi / 2, math.pi],
            ["−π", "−π/2", "0", "π/2", "π"],
        )
    ax.set_xticks(ticks, labels)
    ax.set_yticks(ticks, labels)
    n = f"n={len(phi)}"
    if log_w is not None and not bool(torch.isfinite(log_w).all()):  # invalid samples: weight 0
        n = f"n={int(torch.isfinite(log_w).sum())} valid of {len(phi)}"
    name = f"{title} ({n})" if title else n
    if _weighted(log_w):
        name += f"\nESS n={_kish(log_w):.1f}"
        if thin.any():
            name += (f"; grey: bins of < {MIN_BIN_SAMPLES:g} eff. samples\n"
                     f"({mass[thin].sum():.0%} of the weight)")
    ax.set_title(name, fontsize=9)
    return image


def _kish(log_w: Tensor) -> float:
    """Kish effective samples of ``log_w`` (a count)."""
    w = sample_weights(log_w.detach().to("cpu").flatten())
    return float(1.0 / np.square(w).sum())


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
    fig, axes = plt.subplots(  # room above each row for a two-line panel title
        n_rows, n_cols, figsize=(2.6 * n_cols + 0.8, 3.0 * n_rows), squeeze=False
    )
    cmap = _cmap(plt)
    unit = "°" if degrees else "rad"
    flat = list(axes.flat)
    for ax, entry in zip(flat, entries):
        image = _draw(ax, entry, bins=bins, f_max=f_max, degrees=degrees, cmap=cmap)
        ax.tick_params(labelsize=6)
        ax.title.set_fontsize(7)
    for ax in flat[len(entries) :]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel(f"φ ({unit})", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel(f"ψ ({unit})", fontsize=8)
    fig.subplots_adjust(hspace=0.6)
    fig.colorbar(image, ax=flat, label="free energy (kT)", shrink=0.8)
    return save_figure(fig, path)


def plot_free_energy_profiles(
    profiles: Sequence[tuple[str, Profile]],
    path: str | Path,
    *,
    xlabel: str = "φ (rad)",
    f_max: float = 15.0,
    min_samples: float = 5.0,
) -> Path:
    """Free-energy profiles (kT) as lines with ±1 standard-error bands, one per label.

    Bins with fewer than ``min_samples`` effective samples (``Profile.n_eff``) are not drawn:
    their free energy is noise. The free-energy axis spans the drawn values plus a margin (at
    most ``f_max``); the bands are clipped to it, so a huge error of one bin cannot squash the
    curves.

    Args:
        profiles: ``(label, Profile)`` each, e.g. MD vs reweighted model along φ.
        path: PNG to write (atomically).
        xlabel: label of the coordinate axis.
        f_max: upper end of the free-energy axis at most (kT).
        min_samples: fewest effective samples of a drawn bin.
    """
    if not profiles:
        raise ValueError("plot_free_energy_profiles needs at least one profile")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    curves = [(label, p, _drawn(p, min_samples)) for label, p in profiles]
    low, high = profile_limits([f for _, _, f in curves], f_max)
    for label, profile, f in curves:
        x = profile.centers.double().numpy()
        err = profile.F_err.double().numpy()
        method = "block" if profile.error_method == "block" else "bootstrap"
        (line,) = ax.plot(x, f, label=f"{label} (± {method})", marker=".", markersize=3)
        band = np.isfinite(f) & np.isfinite(err)
        ax.fill_between(
            x, np.clip(np.where(band, f - err, np.nan), low, high),
            np.clip(np.where(band, f + err, np.nan), low, high),
            color=line.get_color(), alpha=0.25, linewidth=0,
        )
    ax.set_ylim(low, high)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("free energy (kT)")
    ax.set_title(f"bins with < {min_samples:g} effective samples not drawn; bands ±1 s.e.",
                 fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def profile_limits(curves: Sequence[np.ndarray], f_max: float) -> tuple[float, float]:
    """The free-energy axis ``(low, high)`` (kT) of drawn profiles ``[bins]`` (nan: not drawn):
    their finite values (at most ``f_max``) plus a margin of 8 % (at least 0.5 kT)."""
    shown = np.concatenate([f[np.isfinite(f)] for f in curves])
    low, high = (0.0, f_max) if not len(shown) else (shown.min(), min(shown.max(), f_max))
    margin = max(0.5, 0.08 * (high - low))
    return float(low - margin), float(high + margin)


def _drawn(profile: Profile, min_samples: float) -> np.ndarray:
    """The profile's free energies ``[bins]`` with empty and too thin bins as nan."""
    f = profile.F.double().numpy().copy()
    f[~np.isfinite(f)] = np.nan
    if profile.n_eff is not None:
        f[profile.n_eff.double().numpy() < min_samples] = np.nan
    return f - np.nanmin(f) if np.isfinite(f).any() else f
