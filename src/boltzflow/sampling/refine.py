"""Annealed importance sampling (AIS) and sequential Monte Carlo (SMC) from a flow to its target.

The chain runs in the flow's **latent space** ``z`` (``x = T(z)``, ``log q(x) = log p₀(z) −
log|det ∂T/∂z|``). The intermediate densities ``π_β(x) ∝ q(x)^{1−β} exp(−β u(x))`` become, with
the Jacobian of ``T`` included,

    ``log π_β(z) = log p₀(z) + β · log w(z)``,   ``log w(z) = −u(T z) − log q(T z)``,

so ``β = 0`` is the flow's prior (exact samples) and ``β = 1`` the Boltzmann target pulled back
through the flow. The latent space is the flow's own well-conditioned space (roughly unit scale;
for the internal-coordinate flows it holds the torsions as periodic coordinates), and the
Jacobian is exactly the flow's ``logdet``.

AIS (Neal 2001): particles ``z ~ p₀``; at level ``k`` the log weight gains
``(β_k − β_{k−1}) · log w(z)`` and the particles take ``steps`` MALA moves that leave
``π_{β_k}`` invariant. The final ``log W`` are exact importance weights of the final ``x`` for
the target, ``E[exp(log W)] = Z``; without resampling their Kish ESS keeps its meaning. SMC
resamples (systematically) whenever the ESS drops below ``resample_threshold · n``; its
particles then carry equal weights within each lineage and the number of surviving lineages is
the honest count.

Step sizes are tuned toward ``target_acceptance`` on a separate **pilot** population of
``pilot`` particles, per level, with a per-coordinate scale (the pilot's spread of each latent
coordinate; circular ones capped so a wrapped Gaussian proposal is exact to double precision);
the main run uses the frozen values, so the adaptation cannot bias its weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..distributions.normal import MeanFreeNormal
from ..distributions.torus import ProductBase
from ..energies.base import Energy
from ..errors import BoltzflowError
from ..flow import Flow
from .reweight import effective_sample_size, resample_systematic
from .samples import Samples

__all__ = ["LatentTarget", "RefineOptions", "RefineResult", "refine", "refine_summary"]

METHODS = ("ais", "smc")
#: Largest proposal standard deviation (rad) on a circular coordinate: the wrapped Gaussian's
#: other images then weigh less than exp(−(2π)² / (2 · 0.5²)) ≈ 1e-34.
MAX_CIRCULAR_STEP = 0.5


@dataclass(frozen=True)
class RefineOptions:
    """How to refine flow samples toward the target.

    Attributes:
        method: ``ais`` (weights, no resampling) or ``smc`` (ESS-triggered resampling).
        levels: intermediate densities ``K`` (``β_k = (k / K)^schedule_power``).
        steps: MALA moves per level.
        target_acceptance: acceptance the pilot tunes the step size toward.
        step_size: initial step size (in units of each coordinate's scale).
        pilot: particles of the pilot run that tunes the step sizes (not part of the estimate).
        schedule_power: ``β_k = (k / K)^p``; ``p > 1`` spends more levels near the flow.
        resample_threshold: SMC resamples when the ESS falls below this fraction.
        batch_size: particles per network pass (bounds memory).
        seed: seed of the pilot and the main run.
    """

    method: str = "ais"
    levels: int = 20
    steps: int = 2
    target_acceptance: float = 0.57
    step_size: float = 0.2
    pilot: int = 256
    schedule_power: float = 1.0
    resample_threshold: float = 0.5
    batch_size: int = 4096
    seed: int = 0

    def __post_init__(self) -> None:
        checks = (
            (self.method in METHODS, "--refine", f"one of {', '.join(METHODS)}", self.method),
            (self.levels >= 1, "--levels", "at least 1", self.levels),
            (self.steps >= 1, "--mcmc-steps", "at least 1", self.steps),
            (0 < self.target_acceptance < 1, "target_acceptance", "in (0, 1)",
             self.target_acceptance),
            (self.step_size > 0, "--step-size", "positive", self.step_size),
            (self.pilot >= 16, "pilot", "at least 16 particles", self.pilot),
            (self.schedule_power > 0, "schedule_power", "positive", self.schedule_power),
            (0 < self.resample_threshold <= 1, "resample_threshold", "in (0, 1]",
             self.resample_threshold),
            (self.batch_size >= 1, "batch_size", "at least 1", self.batch_size),
        )
        for ok, name, allowed, value in checks:
            if not ok:
                raise BoltzflowError(f"{name} must be {allowed}, got {value!r}")

    def betas(self) -> list[float]:
        """``β_0 = 0 < β_1 < … < β_K = 1``."""
        return [(k / self.levels) ** self.schedule_power for k in range(self.levels + 1)]


@dataclass
class RefineResult:
    """Refined samples and what the refinement did.

    Attributes:
        samples: final ``x`` with the flow's ``log_q`` of them, ``u`` and the AIS/SMC
            ``log_w`` (exact importance weights for the target).
        info: JSON-ready: method, levels, ESS before (plain reweighting of the same initial
            samples) and after, acceptance and step size per level, energy evaluations per
            sample, ``log_Z`` with its bootstrap error, particles dropped for a non-finite
            energy, and for SMC the resamplings and surviving lineages.
    """

    samples: Samples
    info: dict[str, Any] = field(default_factory=dict)


class LatentTarget:
    """``log π_β(z) = log p₀(z) + β · log w(z)`` of a flow and an energy, evaluated in chunks.

    One evaluation gives ``log p₀``, ``log w`` and their gradients separately, so the density
    and its gradient at any ``β`` follow without another energy evaluation
    (:func:`log_pi`, :func:`grad_log_pi`).

    Args:
        flow: the flow (its base and bijection).
        energy: the target's reduced energy (kT); evaluated in float64.
        batch_size: particles per network pass.
    """

    def __init__(self, flow: Flow, energy: Energy, batch_size: int = 4096):
        self.flow, self.energy, self.batch_size = flow, energy, batch_size
        self.evaluations = 0

    def __call__(self, z: Tensor) -> dict[str, Tensor]:
        """``log_base``, ``log_w`` (``-inf`` where not finite), their gradients ``g_base`` and
        ``g_w``, and ``log_q``, ``u``, ``x`` at ``z``."""
        self.evaluations += len(z)
        parts = [self._chunk(c) for c in torch.split(z, self.batch_size)]
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    def _chunk(self, z: Tensor) -> dict[str, Tensor]:
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            log_base = self.flow.base.log_prob(z)
            (g_base,) = torch.autograd.grad(log_base.sum(), z, retain_graph=True)
            x, logdet = self.flow.bijection.forward(z)
            u = self.energy.energy(x.to(torch.float64))
            log_q = log_base.to(u.dtype) - logdet.to(u.dtype)
            log_w = -u - log_q
            ok = torch.isfinite(log_w)
            (g_w,) = torch.autograd.grad(torch.where(ok, log_w, 0.0).sum(), z)
        bad = ~ok | ~torch.isfinite(g_w.flatten(1)).all(1)
        g_w = torch.where(bad.view(-1, *[1] * (z.dim() - 1)), 0.0, g_w)
        return {
            "log_base": log_base.detach().to(torch.float64),
            "log_w": torch.where(bad, -math.inf, log_w).detach(),
            "g_base": g_base.detach(), "g_w": g_w.detach(), "log_q": log_q.detach(),
            "u": u.detach(), "x": x.detach(),
        }


def log_pi(state: dict[str, Tensor], beta: float) -> Tensor:
    """``log p₀ + β log w`` per particle (``-inf`` where ``log w`` is)."""
    return state["log_base"] + beta * state["log_w"] if beta > 0 else torch.where(
        torch.isfinite(state["log_w"]), state["log_base"], -math.inf)


def grad_log_pi(state: dict[str, Tensor], beta: float) -> Tensor:
    """``∇ log p₀ + β ∇ log w``."""
    return state["g_base"] + beta * state["g_w"]


class LatentGeometry:
    """The latent space's shape: a mean-free subspace (particles), periodic coordinates
    (torsions of the internal-coordinate flows), or plain Euclidean."""

    def __init__(self, flow: Flow):
        self.mean_free = isinstance(flow.base, MeanFreeNormal)
        self.circular = flow.base.is_circular if isinstance(flow.base, ProductBase) else None

    def project(self, v: Tensor) -> Tensor:
        """``v`` restricted to the space (centred over particles for a mean-free prior)."""
        return v - v.mean(dim=-2, keepdim=True) if self.mean_free else v

    def wrap(self, z: Tensor) -> Tensor:
        """Periodic coordinates into ``[-π, π)``."""
        if self.circular is None:
            return z
        wrapped = torch.remainder(z + math.pi, 2 * math.pi) - math.pi
        return torch.where(self.circular.to(z.device), wrapped, z)

    def scale(self, z: Tensor) -> Tensor:
        """Per-coordinate step scale from a population ``z`` (scalar 1 on a mean-free space;
        a circular coordinate's from its circular spread, capped at
        :data:`MAX_CIRCULAR_STEP`)."""
        if self.mean_free or len(z) < 2:
            return torch.ones_like(z[0])
        scale = z.std(0).clamp(0.05, 3.0)
        if self.circular is not None:
            c = self.circular.to(z.device)
            r = torch.sqrt(z.cos().mean(0) ** 2 + z.sin().mean(0) ** 2).clamp(1e-6, 1.0)
            circ = torch.sqrt(-2 * torch.log(r)).clamp(0.05, MAX_CIRCULAR_STEP)
            scale = torch.where(c, circ, scale)
        return scale


def _mala(
    target: LatentTarget, geometry: LatentGeometry, z: Tensor, state: dict[str, Tensor],
    beta: float, eps: float, scale: Tensor, generator: torch.Generator,
) -> tuple[Tensor, dict[str, Tensor], Tensor]:
    """One preconditioned MALA move of every particle; returns ``z``, its state and the
    acceptance flags."""
    cap = None if geometry.circular is None else geometry.circular.to(z.device)
    step = eps * scale
    if cap is not None:
        step = torch.where(cap, step.clamp(max=MAX_CIRCULAR_STEP), step)
    var = step.pow(2)
    mean = z + 0.5 * var * geometry.project(grad_log_pi(state, beta).to(z.dtype))
    noise = geometry.project(torch.randn(z.shape, generator=generator, dtype=z.dtype)
                             .to(z.device))
    proposal = geometry.wrap(mean + step * noise)
    new = target(proposal)
    back = proposal + 0.5 * var * geometry.project(grad_log_pi(new, beta).to(z.dtype))
    log_fwd = _log_gauss(geometry, proposal - mean, step)
    log_bwd = _log_gauss(geometry, z - back, step)
    log_alpha = log_pi(new, beta) - log_pi(state, beta) + (log_bwd - log_fwd).double()
    log_alpha = torch.nan_to_num(log_alpha, nan=-math.inf)
    uniform = torch.rand(len(z), generator=generator, dtype=torch.float64).to(z.device)
    accept = torch.log(uniform).to(log_alpha.dtype) < log_alpha
    shape = (-1, *[1] * (z.dim() - 1))
    z = torch.where(accept.view(shape), proposal, z)
    merged = {k: torch.where(accept.view(-1, *[1] * (v.dim() - 1)), new[k], v)
              for k, v in state.items()}
    return z, merged, accept


def _log_gauss(geometry: LatentGeometry, diff: Tensor, step: Tensor) -> Tensor:
    """``−½ |diff / step|²`` summed per particle (periodic differences taken the short way)."""
    diff = geometry.wrap(diff) if geometry.circular is not None else diff
    return -0.5 * (diff / step).pow(2).flatten(1).sum(-1)


def _anneal(
    target: LatentTarget, geometry: LatentGeometry, z: Tensor, options: RefineOptions,
    tuning: list[tuple[float, Tensor]] | None, generator: torch.Generator,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Run the annealing once; with ``tuning=None`` adapt the step sizes (the pilot) and
    return them in ``tuning``, else use the given ones (the main run)."""
    betas = options.betas()
    state = target(z)
    first_log_w = state["log_w"].clone()
    log_W = torch.zeros(len(z), dtype=torch.float64, device=z.device)
    log_Z_acc, resamplings = 0.0, 0
    ancestor = torch.arange(len(z), device=z.device)
    eps, adapted, acceptance = options.step_size, [], []
    for k in range(1, len(betas)):
        log_W = log_W + (betas[k] - betas[k - 1]) * state["log_w"]
        if options.method == "smc" and effective_sample_size(log_W) < options.resample_threshold:
            log_Z_acc += float(log_mean_exp(log_W))
            idx = resample_systematic(log_W.cpu(), len(z), generator=generator).to(z.device)
            z, ancestor = z[idx], ancestor[idx]
            state = {key: v[idx] for key, v in state.items()}
            log_W, resamplings = torch.zeros_like(log_W), resamplings + 1
        if tuning is None:
            scale = geometry.scale(z)
        else:
            eps, scale = tuning[k - 1]
        accepted = []
        for _ in range(options.steps):
            z, state, accept = _mala(target, geometry, z, state, betas[k], eps, scale, generator)
            alive = torch.isfinite(state["log_w"])
            accepted.append(float(accept[alive].double().mean()) if alive.any() else 0.0)
            if tuning is None:  # Robbins-Monro on log eps toward the target acceptance
                eps *= math.exp(accepted[-1] - options.target_acceptance)
        adapted.append((eps, scale))
        acceptance.append(sum(accepted) / len(accepted))
        if progress is not None:
            progress(k)
    return {"z": z, "state": state, "log_W": log_W, "first_log_w": first_log_w,
            "log_Z_acc": log_Z_acc, "resamplings": resamplings, "ancestor": ancestor,
            "tuning": adapted, "acceptance": acceptance}


def log_mean_exp(log_w: Tensor) -> Tensor:
    """``log mean exp(log_w)`` (``-inf`` when every entry is)."""
    if not torch.isfinite(log_w).any():
        return torch.tensor(-math.inf, dtype=torch.float64)
    return torch.logsumexp(log_w, 0) - math.log(len(log_w))


def bootstrap_stderr(log_w: Tensor, n_boot: int = 200, seed: int = 0) -> float:
    """Bootstrap standard error of ``log mean exp(log_w)`` over the particles."""
    gen = torch.Generator().manual_seed(seed)
    log_w = log_w.detach().cpu().double()
    idx = torch.randint(len(log_w), (n_boot, len(log_w)), generator=gen)
    values = torch.logsumexp(log_w[idx], 1) - math.log(len(log_w))
    values = values[torch.isfinite(values)]
    return float(values.std()) if len(values) > 1 else math.nan


def refine(
    flow: Flow, energy: Energy, n: int, options: RefineOptions, *,
    progress: Callable[[str, int, int], None] | None = None,
) -> RefineResult:
    """``n`` samples of ``flow`` moved toward ``exp(−u)`` by AIS or SMC, with exact weights.

    Args:
        flow: a flow with a cheap exact ``log q`` and its gradient (coupling or
            internal-coordinate flows).
        energy: the target's reduced energy (kT).
        n: particles of the main run.
        options: the method, levels, moves and tuning.
        progress: ``progress(stage, level, levels)`` after every level of the pilot and of
            the main run.

    Returns:
        A :class:`RefineResult`; particles whose energy went non-finite weigh zero
        (``log_w = -inf``) and are counted in ``info["n_dropped"]``.

    Example:
        >>> result = refine(flow, system.energy, 1000, RefineOptions(levels=10))  # doctest: +SKIP
        >>> result.info["ess"], result.info["ess_before"]  # doctest: +SKIP
    """
    if n < 1:
        raise BoltzflowError(f"the number of samples must be positive, got {n}")
    like = next(flow.parameters(), torch.zeros(()))
    energy = energy.to(like.device, torch.float64)
    target = LatentTarget(flow, energy, options.batch_size)
    geometry = LatentGeometry(flow)
    gen = torch.Generator().manual_seed(options.seed)

    def levels(stage: str) -> Callable[[int], None] | None:
        return None if progress is None else (lambda k: progress(stage, k, options.levels))

    torch.manual_seed(options.seed)
    pilot = _anneal(target, geometry, flow.base.sample(options.pilot).to(like), options, None,
                    gen, levels("tune"))
    pilot_evaluations = target.evaluations
    z0 = flow.base.sample(n).to(like)
    run = _anneal(target, geometry, z0, options, pilot["tuning"], gen, levels(options.method))
    state, log_W = run["state"], run["log_W"]
    dead = ~torch.isfinite(state["log_w"]) | ~torch.isfinite(log_W)
    log_W = torch.where(dead, -math.inf, log_W)
    log_Z = run["log_Z_acc"] + float(log_mean_exp(log_W))
    info: dict[str, Any] = {
        "method": options.method, "levels": options.levels, "mcmc_steps": options.steps,
        "n_samples": n, "ess_before": effective_sample_size(run["first_log_w"]),
        "ess": effective_sample_size(log_W),
        "acceptance_per_level": [round(a, 4) for a in run["acceptance"]],
        "step_size_per_level": [round(e, 5) for e, _ in pilot["tuning"]],
        "energy_evaluations_per_sample": (target.evaluations - pilot_evaluations) / n,
        "energy_evaluations_pilot": pilot_evaluations,
        "log_Z": log_Z, "n_dropped": int(dead.sum()),
    }
    info["ess_samples_before"] = info["ess_before"] * n
    info["ess_samples"] = info["ess"] * n
    if options.method == "ais":
        info["log_Z_stderr"] = bootstrap_stderr(log_W, seed=options.seed)
    else:
        info["n_resamplings"] = run["resamplings"]
        info["n_lineages"] = int(torch.unique(run["ancestor"]).numel())
    samples = Samples(state["x"], state["log_q"], state["u"], log_W)
    return RefineResult(samples, info)


def refine_summary(info: dict[str, Any]) -> str:
    """One line on a refinement: ESS before → after, acceptance, cost, ``log Z``."""
    acc = info["acceptance_per_level"]
    line = (f"{info['method'].upper()} × {info['levels']} levels: ESS "
            f"{info['ess_before']:.2%} → {info['ess']:.2%} ({info['ess_samples_before']:.1f} → "
            f"{info['ess_samples']:.1f} effective of {info['n_samples']} samples), acceptance "
            f"{min(acc):.2f}–{max(acc):.2f}, {info['energy_evaluations_per_sample']:.0f} energy "
            f"evaluations per sample, log Z {info['log_Z']:.3f}")
    if info.get("log_Z_stderr") is not None:
        line += f" ± {info['log_Z_stderr']:.3f}"
    if "n_lineages" in info:
        line += (f"; {info['n_resamplings']} resamplings, {info['n_lineages']} lineages "
                 "survive (ESS after resampling counts lineages' weights only)")
    if info["n_dropped"]:
        line += f"; {info['n_dropped']} particles dropped (non-finite energy)"
    return line
