"""Training losses as pure functions of a model, a target and data.

* :func:`nll` — maximum likelihood on samples (forward KL up to a constant).
* :func:`reverse_kl` — ``E_q[u(x) + log q(x)]`` on the energy alone (Noé et al., 2019).
* :func:`log_weight_variance` — the variance of ``log q(x) + u(x)`` over reference samples
  (a log-variance divergence with the data as reference; Richter et al., 2020).
* :func:`reweighted_nll` — the likelihood of the model's own samples weighted by their
  normalized importance weights (the forward KL ``KL(p ‖ q)`` estimated without data).
* :func:`combined_loss` — their weighted sum.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..distributions.base import Distribution
from ..energies.base import Energy


def regularize_energy(u: Tensor, u_high: float = 1e3, u_max: float = 1e9) -> Tensor:
    """Soften very high energies so one bad sample cannot dominate a reverse-KL gradient.

    Below ``u_high`` the energy is unchanged; above it grows logarithmically,
    ``u_high + log(1 + u - u_high)`` (as in Noé et al., 2019); non-finite values become ``u_max``.
    """
    excess = (u - u_high).clamp(min=0.0)
    soft = torch.where(u > u_high, u_high + torch.log1p(excess), u)
    return torch.where(torch.isfinite(u), soft, torch.full_like(u, u_max))


def nll(model: Distribution, x: Tensor) -> Tensor:
    """Mean negative log-likelihood ``-E_data[log q(x)]`` (a scalar tensor)."""
    return -model.log_prob(x).mean()


def reverse_kl(
    model: Distribution, energy: Energy, n_samples: int, *, u_high: float = 1e3
) -> Tensor:
    """``E_q[u(x) + log q(x)]`` estimated from ``n_samples`` reparameterized model samples.

    Equals ``KL(q || p) - log Z`` so its minimum is ``-log Z``; energies are softened above
    ``u_high`` by :func:`regularize_energy`. Samples outside the flow's image (``log q = +inf``:
    an internal-coordinate ring that cannot close) carry no density and are left out of the
    mean.
    """
    x, log_q = model.sample_and_log_prob(n_samples)
    u = regularize_energy(energy.energy(x), u_high=u_high)
    inside = log_q < math.inf
    if inside.all():
        return (u + log_q).mean()
    return torch.where(inside, u + log_q, 0.0).sum() / inside.sum().clamp_min(1)


def log_weight_variance(log_q: Tensor, u: Tensor) -> Tensor:
    """``Var[log q(x) + u(x)]`` over a batch of reference samples ``x`` (a scalar tensor).

    ``log q + u = -log w``: the variance is zero exactly when ``q ∝ exp(-u)`` where the samples
    lie, whatever the normalizing constant; it is the log-variance divergence of Richter et
    al. (2020, "VarGrad") with the data's distribution as reference. Unlike the likelihood,
    which learns relative densities from how often configurations occur, it reads them from the
    energies the samples carry. Costs nothing beyond the likelihood's density pass.
    """
    a = log_q + u
    return (a - a.mean()).square().mean()


def reweighted_nll(model: Distribution, energy: Energy, n_samples: int) -> Tensor:
    """``−Σ_i w̄_i log q(x_i)`` over ``n_samples`` model samples drawn without gradient, with
    ``w̄`` their self-normalized importance weights ``softmax(−u − log q)`` (held fixed).

    Its gradient estimates that of the forward KL ``KL(p ‖ q) = −E_p[log q] + const`` from the
    model's own samples: like the likelihood it raises ``q`` where the target has more mass than
    the model (the samples with large weights) and, through the normalization, lowers it
    elsewhere, so it covers mass rather than sharpening onto the lowest energies as the reverse
    KL does. Where the weights collapse onto a few samples the estimate is noisy; it is meant
    beside the likelihood on data. Samples with a non-finite energy or density weigh 0.
    """
    with torch.no_grad():
        x, log_q0 = model.sample_and_log_prob(n_samples)
        log_w = -energy.energy(x) - log_q0
        log_w = torch.where(torch.isfinite(log_w), log_w, torch.full_like(log_w, -math.inf))
        if not torch.isfinite(log_w).any():
            return torch.zeros((), dtype=log_q0.dtype, device=log_q0.device)
        w = torch.softmax(log_w, 0)
    keep = w > 0
    return -(w[keep] * model.log_prob(x[keep])).sum()


def combined_loss(
    model: Distribution,
    energy: Energy,
    x: Tensor | None,
    *,
    w_nll: float = 1.0,
    w_kl: float = 0.0,
    n_samples: int = 256,
    u_high: float = 1e3,
    u_data: Tensor | None = None,
    w_lv: float = 0.0,
    n_lv_samples: int = 0,
    x_ref: Tensor | None = None,
    u_ref: Tensor | None = None,
    w_rw: float = 0.0,
) -> dict[str, Tensor]:
    """``w_nll · nll + w_lv · log_weight_variance + w_kl · reverse_kl + w_rw ·
    reweighted_nll`` (the last on ``n_samples`` model samples); returns ``{"loss", "nll",
    "lv", "kl", "rw"}`` (the parts it used). ``u_data``: the energies of ``x`` (``w_lv > 0``);
    ``n_lv_samples`` model samples (drawn without gradient, energies softened above ``u_high``)
    join the data in the variance, so that mass the model puts where no data lie is seen;
    so do reference configurations ``x_ref`` with energies ``u_ref`` (no likelihood)."""
    parts: dict[str, Tensor] = {}
    loss = torch.zeros(())
    if w_lv > 0 and (x is None or u_data is None):
        raise ValueError("w_lv > 0 needs data samples x and their energies u_data")
    if w_nll > 0 or w_lv > 0:
        if x is None:
            raise ValueError("w_nll > 0 needs data samples x")
        log_q = model.log_prob(x)
        parts["nll"] = -log_q.mean()
        loss = loss + w_nll * parts["nll"]
        if w_lv > 0:
            u_lv = u_data
            if n_lv_samples > 0:
                with torch.no_grad():
                    xq = model.sample(n_lv_samples)
                    uq = regularize_energy(energy.energy(xq), u_high=u_high)
                lq = model.log_prob(xq)
                inside = torch.isfinite(lq)
                log_q, u_lv = torch.cat([log_q, lq[inside]]), torch.cat([u_data, uq[inside]])
            if x_ref is not None and len(x_ref):
                lr = model.log_prob(x_ref)
                inside = torch.isfinite(lr)
                log_q, u_lv = torch.cat([log_q, lr[inside]]), torch.cat([u_lv, u_ref[inside]])
            parts["lv"] = log_weight_variance(log_q, u_lv)
            loss = loss + w_lv * parts["lv"]
    if w_kl > 0:
        parts["kl"] = reverse_kl(model, energy, n_samples, u_high=u_high)
        loss = loss + w_kl * parts["kl"]
    if w_rw > 0:
        parts["rw"] = reweighted_nll(model, energy, n_samples)
        loss = loss + w_rw * parts["rw"]
    if not parts:
        raise ValueError("at least one of w_nll, w_lv, w_kl and w_rw must be positive")
    return {"loss": loss, **parts}
