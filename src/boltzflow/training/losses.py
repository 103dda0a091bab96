"""Training losses as pure functions of a model, a target and data.

* :func:`nll` — maximum likelihood on samples (forward KL up to a constant).
* :func:`reverse_kl` — ``E_q[u(x) + log q(x)]`` on the energy alone (Noé et al., 2019).
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


def combined_loss(
    model: Distribution,
    energy: Energy,
    x: Tensor | None,
    *,
    w_nll: float = 1.0,
    w_kl: float = 0.0,
    n_samples: int = 256,
    u_high: float = 1e3,
) -> dict[str, Tensor]:
    """``w_nll · nll + w_kl · reverse_kl``; returns ``{"loss", "nll", "kl"}`` (the parts it used)."""
    parts: dict[str, Tensor] = {}
    loss = torch.zeros(())
    if w_nll > 0:
        if x is None:
            raise ValueError("w_nll > 0 needs data samples x")
        parts["nll"] = nll(model, x)
        loss = loss + w_nll * parts["nll"]
    if w_kl > 0:
        parts["kl"] = reverse_kl(model, energy, n_samples, u_high=u_high)
        loss = loss + w_kl * parts["kl"]
    if not parts:
        raise ValueError("at least one of w_nll and w_kl must be positive")
    return {"loss": loss, **parts}
