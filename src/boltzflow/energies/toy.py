"""Low-dimensional toy energies: double well, Müller–Brown, many-well and a Gaussian mixture."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import Energy


def quartic_well(x: Tensor, a: float, b: float, c: float) -> Tensor:
    """The 1-D double-well polynomial ``a·x + b·x² + c·x⁴``, elementwise."""
    x2 = x * x
    return a * x + b * x2 + c * x2 * x2


class DoubleWell(Energy):
    """Two-dimensional double well, defined directly in kT.

    ``u(x) = a·x₁ + b·x₁² + c·x₁⁴ + ½·d·x₂²`` on ``x: [B, 2]``. With the defaults the minima are
    at ``x₁ ≈ -1.4296`` (``u ≈ -4.3555``, deeper) and ``x₁ ≈ 1.3983`` (``u ≈ -3.6484``); the
    barrier at ``x₁ ≈ 0.0313`` is 4.36 kT above the deeper well, and the free-energy difference
    between the wells is 0.66 kT (the left well holds 66.0 % of the mass).

    Args:
        a: linear (tilt) coefficient of ``x₁``.
        b: quadratic coefficient of ``x₁`` (negative for two wells).
        c: quartic coefficient of ``x₁``.
        d: harmonic force constant of ``x₂``.

    Reference:
        Noé, Olsson, Köhler, Wu, "Boltzmann generators", Science 365 (2019), whose double well
        has this form.

    Example:
        >>> DoubleWell().energy(torch.tensor([[-1.4296, 0.0]]))
        tensor([-4.3555])
    """

    def __init__(self, *, a: float = 0.25, b: float = -4.0, c: float = 1.0, d: float = 1.0):
        super().__init__((2,))
        self.a, self.b, self.c, self.d = float(a), float(b), float(c), float(d)

    def energy_x1(self, x1: Tensor) -> Tensor:
        """The ``x₁`` part ``a·x₁ + b·x₁² + c·x₁⁴`` of the energy, elementwise."""
        return quartic_well(x1, self.a, self.b, self.c)

    def _energy(self, x: Tensor) -> Tensor:
        return self.energy_x1(x[:, 0]) + 0.5 * self.d * x[:, 1] ** 2


#: Müller–Brown parameters ``(A, a, b, c, x0, y0)`` for its four Gaussian-like terms.
MUELLER_BROWN_PARAMETERS: dict[str, tuple[float, float, float, float]] = {
    "A": (-200.0, -100.0, -170.0, 15.0),
    "a": (-1.0, -1.0, -6.5, 0.7),
    "b": (0.0, 0.0, 11.0, 0.6),
    "c": (-10.0, -10.0, -6.5, 0.7),
    "x0": (1.0, 0.0, -0.5, -1.0),
    "y0": (0.0, 0.5, 1.5, 1.0),
}


class MuellerBrown(Energy):
    """The Müller–Brown potential, reduced by ``beta``.

    ``u(x, y) = beta · Σₖ Aₖ exp(aₖ(x - x0ₖ)² + bₖ(x - x0ₖ)(y - y0ₖ) + cₖ(y - y0ₖ)²)`` on
    ``x: [B, 2]``, with the standard parameters :data:`MUELLER_BROWN_PARAMETERS`. In the original
    units ``V = u / beta`` the three minima are ``V ≈ -146.70`` at ``(-0.558, 1.442)``,
    ``-108.17`` at ``(0.623, 0.028)`` and ``-80.77`` at ``(-0.050, 0.467)``.

    Args:
        beta: inverse temperature multiplying ``V``; the default ``1/20`` makes the deepest
            minimum about 7.3 kT deep and the barriers a few kT.

    Reference:
        Müller, Brown, "Location of saddle points and minimum energy paths by a constrained
        simplex optimization procedure", Theor. Chim. Acta 53, 75 (1979).
    """

    def __init__(self, *, beta: float = 1.0 / 20.0):
        super().__init__((2,))
        self.beta = float(beta)
        for name, values in MUELLER_BROWN_PARAMETERS.items():
            self.register_buffer(f"_{name}", torch.tensor(values, dtype=torch.float64))

    def potential(self, x: Tensor) -> Tensor:
        """The potential ``V: [B]`` in its original units (``u = beta · V``)."""
        dx = x[:, 0:1] - self._x0.to(x.dtype)
        dy = x[:, 1:2] - self._y0.to(x.dtype)
        a, b, c, amp = (getattr(self, f"_{n}").to(x.dtype) for n in ("a", "b", "c", "A"))
        return (amp * torch.exp(a * dx * dx + b * dx * dy + c * dy * dy)).sum(-1)

    def _energy(self, x: Tensor) -> Tensor:
        return self.beta * self.potential(x)


class ManyWell(Energy):
    """FAB's many-well: independent copies of a 2-D double well, defined directly in kT.

    ``u(x) = Σₖ [a·x₂ₖ + b·x₂ₖ² + c·x₂ₖ⁴ + ½·x₂ₖ₊₁²]`` on ``x: [B, dim]``, pairing coordinates
    ``(x[2k], x[2k+1])``. With FAB's defaults each copy is ``x₁⁴ - 6x₁² - 0.5x₁ + ½x₂²``, wells at
    ``x₁ ≈ -1.711`` (``u ≈ -8.14``) and ``x₁ ≈ 1.753`` (``u ≈ -9.87``, holding 84.4 % of the mass),
    so the 32-D target has 2¹⁶ modes and
    ``log Z = 16·(log 11784.50927 + ½ log 2π)``.

    Args:
        dim: even number of coordinates.
        a, b, c: coefficients of the double-well coordinate ``x₂ₖ``.

    Reference:
        Midgley, Stimper, Simm, Schölkopf, Hernández-Lobato, "Flow annealed importance sampling
        bootstrap", ICLR 2023 (``ManyWellEnergy`` in fab-torch).
    """

    def __init__(self, dim: int = 32, *, a: float = -0.5, b: float = -6.0, c: float = 1.0):
        if dim < 2 or dim % 2:
            raise ValueError(f"ManyWell dim must be a positive even number, got {dim}")
        super().__init__((dim,))
        self.a, self.b, self.c = float(a), float(b), float(c)

    @property
    def n_wells(self) -> int:
        """Number of independent 2-D double wells."""
        return self.event_shape[0] // 2

    def energy_x1(self, x1: Tensor) -> Tensor:
        """The double-well part ``a·x₁ + b·x₁² + c·x₁⁴`` of one copy, elementwise."""
        return quartic_well(x1, self.a, self.b, self.c)

    def _energy(self, x: Tensor) -> Tensor:
        return self.energy_x1(x[:, 0::2]).sum(-1) + 0.5 * x[:, 1::2].pow(2).sum(-1)


class GaussianMixture(Energy):
    """``u = -log p`` of a normalized mixture of isotropic Gaussians.

    ``p(x) = Σₖ wₖ N(x; μₖ, σ²I)`` on ``x: [B, dim]``; ``u`` is the exact negative log density, so
    ``exp(-u)`` integrates to one.

    Args:
        means: component means ``[K, dim]``.
        scale: standard deviation ``σ`` of every component.
        weights: mixture weights ``[K]`` (normalized here); equal weights if ``None``.

    Reference:
        FAB's ``GMM`` target (Midgley et al., ICLR 2023) is ``GaussianMixture`` with 40 means
        uniform in ``[-40, 40]²`` and ``σ = softplus(1)``; see ``boltzflow.systems.get("gmm-40")``.
    """

    def __init__(self, means: Tensor, scale: float, weights: Tensor | None = None):
        means = torch.as_tensor(means)
        if means.dim() != 2:
            raise ValueError(f"means must have shape [n_components, dim], got {list(means.shape)}")
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        super().__init__((means.shape[1],))
        if weights is None:
            weights = torch.ones(means.shape[0])
        weights = torch.as_tensor(weights, dtype=means.dtype)
        if weights.shape != (means.shape[0],) or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError("weights must be [n_components], non-negative, with a positive sum")
        self.register_buffer("means", means.clone())
        self.register_buffer("log_weights", torch.log(weights / weights.sum()))
        self.scale = float(scale)

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    def _energy(self, x: Tensor) -> Tensor:
        d = x.shape[1]
        sq = (x.unsqueeze(1) - self.means.to(x.dtype)).pow(2).sum(-1)  # [B, K]
        log_norm = d * math.log(self.scale) + 0.5 * d * math.log(2 * math.pi)
        log_comp = -0.5 * sq / self.scale**2 - log_norm + self.log_weights.to(x.dtype)
        return -torch.logsumexp(log_comp, dim=-1)
