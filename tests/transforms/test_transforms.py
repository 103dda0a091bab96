"""Tests of the bijections: every class through the shared contract, then targeted maths checks."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from boltzflow import Flow, MeanFreeNormal, StandardNormal, testing
from boltzflow.continuous import EGNN, RK4, ContinuousFlow, Exact, MLPField
from boltzflow.transforms import (
    AffineCoupling,
    Chain,
    InternalCoordinates,
    Inverse,
    MeanFreeEmbedding,
    Normalization,
    Reshape,
    SplineCoupling,
    circular_rational_quadratic_spline,
    coupling_flow,
    helmert_basis,
    rational_quadratic_spline,
    zmatrix_from_graph,
)


def _normal(*shape: int, scale: float = 1.0) -> Callable[[torch.Generator], Tensor]:
    return lambda g: scale * torch.randn(*shape, generator=g, dtype=torch.float64)


def _uniform(*shape: int, half_width: float) -> Callable[[torch.Generator], Tensor]:
    return lambda g: half_width * (2 * torch.rand(*shape, generator=g, dtype=torch.float64) - 1)


def _angles_and_normals(
    b: int, dim: int, circular: list[int]
) -> Callable[[torch.Generator], Tensor]:
    """Normal coordinates (some in the spline tails), periodic ones uniform on ``(-π, π)``."""

    def sample(g: torch.Generator) -> Tensor:
        z = 2.0 * torch.randn(b, dim, generator=g, dtype=torch.float64)
        z[:, circular] = _uniform(b, len(circular), half_width=math.pi)(g)
        return z

    return sample


def _centred(*shape: int) -> Callable[[torch.Generator], Tensor]:
    """Mean-free particle configurations ``shape = (B, N, d)``."""

    def sample(g: torch.Generator) -> Tensor:
        z = torch.randn(*shape, generator=g, dtype=torch.float64)
        return z - z.mean(dim=-2, keepdim=True)

    return sample


# Ethanol, CH3-CH2-OH: C0 C1 O2, H3-H5 on C0, H6 H7 on C1, H8 on O2.
_ETHANOL_BONDS = [(0, 1), (1, 2), (0, 3), (0, 4), (0, 5), (1, 6), (1, 7), (2, 8)]


def _ethanol() -> InternalCoordinates:
    return InternalCoordinates(zmatrix_from_graph(9, _ETHANOL_BONDS, [False] * 3 + [True] * 6))


def _ethanol_ics(g: torch.Generator) -> Tensor:
    """``[8, 21]``: bonds 0.1-0.15 nm, angles 1.7-2.1 rad, torsions uniform on ``(-π, π)``."""
    bonds = 0.1 + 0.05 * torch.rand(8, 8, generator=g, dtype=torch.float64)
    angles = 1.7 + 0.4 * torch.rand(8, 7, generator=g, dtype=torch.float64)
    return torch.cat([bonds, angles, _uniform(8, 6, half_width=math.pi)(g)], dim=-1)


def _fitted_normalization() -> Normalization:
    g = torch.Generator().manual_seed(1)
    data = torch.randn(64, 3, generator=g) * torch.tensor([0.5, 2.0, 1.0]) + torch.tensor(
        [1, -2, 0]
    )
    return Normalization(3).fit(data)


# name -> (factory of the bijection, sampler of its input). Each factory builds the same
# architecture every time, as ``assert_save_load`` needs.
CASES: dict[str, tuple[Callable[[], nn.Module], Callable[[torch.Generator], Tensor]]] = {
    "affine-coupling": (lambda: AffineCoupling(4, [True, False, True, False]), _normal(8, 4)),
    "spline-coupling": (
        lambda: SplineCoupling(4, [True, False, False, True], bound=2.0, hidden=(16,)),
        _normal(8, 4, scale=2.0),  # some inputs in the identity tails
    ),
    "circular-spline-coupling": (
        lambda: SplineCoupling(3, [True, False, False], circular=[0, 1, 2], n_bins=5),
        _uniform(8, 3, half_width=math.pi),
    ),
    "mixed-spline-coupling": (
        lambda: SplineCoupling(4, [True, False, True, False], circular=[0, 1], hidden=(32, 32)),
        _angles_and_normals(8, 4, [0, 1]),
    ),
    "normalization-trainable": (lambda: Normalization(3, trainable=True), _normal(8, 3)),
    "normalization-fitted": (_fitted_normalization, _normal(8, 3)),
    "reshape": (lambda: Reshape((6,), (3, 2)), _normal(8, 6)),
    "mean-free-embedding": (lambda: MeanFreeEmbedding(4, 2), _normal(8, 6)),
    "coupling-flow-spline": (lambda: coupling_flow(5, n_layers=4, hidden=(16,)), _normal(8, 5)),
    "coupling-flow-affine": (lambda: coupling_flow(3, kind="affine", n_layers=3), _normal(8, 3)),
    "coupling-flow-torus": (
        lambda: coupling_flow(3, n_layers=2, circular=[0, 2], hidden=(16,)),
        _angles_and_normals(8, 3, [0, 2]),
    ),
    "particle-chain": (
        lambda: Chain([coupling_flow(4, n_layers=2, hidden=(16,)), MeanFreeEmbedding(3, 2)]),
        _normal(8, 4),
    ),
    "inverse-spline-coupling": (
        lambda: Inverse(SplineCoupling(3, [False, True, False], circular=[2], hidden=(16,))),
        _angles_and_normals(8, 3, [2]),
    ),
    "continuous-flow-egnn": (
        lambda: ContinuousFlow(EGNN(2, hidden=8, n_layers=2), RK4(12), Exact()),
        _centred(2, 3, 2),
    ),
    "continuous-flow-mlp": (
        lambda: ContinuousFlow(MLPField((3,), hidden=(16,)), RK4(12), Exact()),
        _normal(4, 3),
    ),
    "internal-coordinates": (_ethanol, _ethanol_ics),
}
# Per-case options of ``assert_bijection_contract``. A CNF's two directions are inverse only up
# to its solver's error: with RK4 × 12 in float64 these small fields round-trip, and their two
# logdets cancel, to 2e-8 ... 4e-7 (over seeds), so atol 1e-6; the logdet (the exact divergence
# integrated by the same RK4) is within ~2e-7 of the autograd Jacobian of the discrete map, so
# logdet_atol 1e-5. InternalCoordinates is exact to round-off (1e-10).
# InternalCoordinates' logdet is the rigid-body factored Jacobian, not the volume factor of its
# canonical-frame embedding (tests/test_internal.py checks it against its own reference).
OPTIONS: dict[str, dict[str, Any]] = {
    "continuous-flow-egnn": {"atol": 1e-6, "logdet_atol": 1e-5},
    "continuous-flow-mlp": {"atol": 1e-6, "logdet_atol": 1e-5},
    "internal-coordinates": {"atol": 1e-10, "volume_logdet": False},
}


def _perturb(module: nn.Module, g: torch.Generator, scale: float = 0.1) -> None:
    """Move every parameter off its init: zero last layers would make the checks trivial."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


@pytest.mark.parametrize("name", CASES)
def test_bijection_contract(name: str) -> None:
    factory, sample = CASES[name]
    g = torch.Generator().manual_seed(0)
    bijection = factory().double()
    _perturb(bijection, g)
    z = sample(g)
    if any(True for _ in bijection.parameters()):
        fresh = factory().double()
        assert not torch.allclose(bijection(z)[0], fresh(z)[0]), "perturbing changed nothing"
    testing.assert_bijection_contract(
        bijection, z, lambda: factory().double(), **OPTIONS.get(name, {})
    )


@pytest.mark.parametrize("kind", ["spline", "affine"])
def test_fresh_coupling_flow_is_identity(kind: str) -> None:
    z = torch.randn(16, 6)
    x, logdet = coupling_flow(6, kind=kind)(z)
    assert torch.allclose(x, z, atol=1e-6)
    assert logdet.abs().max() < 1e-5


def _random_spline_params(
    shape: tuple[int, ...], n_bins: int, n_derivatives: int, dtype: torch.dtype = torch.float64
) -> tuple[Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(3)
    return tuple(
        torch.randn(*shape, k, generator=g, dtype=dtype) for k in (n_bins, n_bins, n_derivatives)
    )


def test_spline_maps_interval_onto_itself_and_is_identity_in_tails() -> None:
    bound = 3.0
    inside = torch.linspace(-bound, bound, 501, dtype=torch.float64)
    outside = torch.tensor([-100.0, -3.5, -3.0 - 1e-9, 3.0 + 1e-9, 4.0, 1e3], dtype=torch.float64)
    for x in (inside, outside):
        params = _random_spline_params((), 8, 7)  # one spline, broadcast over x
        y, logdet = rational_quadratic_spline(x, *params, inverse=False, bound=bound)
        if x is inside:
            assert y[0] == -bound and y[-1] == bound
            assert (y.diff() > 0).all(), "the spline is not strictly increasing"
            assert logdet.abs().max() > 0.1, "random parameters should give a non-trivial spline"
        else:
            assert torch.equal(y, x) and torch.equal(logdet, torch.zeros_like(x))


def test_circular_spline_is_a_circle_diffeomorphism() -> None:
    pi = math.pi
    x = torch.tensor([-pi, -pi + 1e-7, pi - 1e-7, pi], dtype=torch.float64)
    params = _random_spline_params((), 8, 8)
    y, logdet = circular_rational_quadratic_spline(x, *params, inverse=False)
    assert y[0] == -pi and y[-1] == pi
    # Tied end derivatives: the slope leaving -π equals the slope arriving at π.
    assert logdet[0].item() == pytest.approx(logdet[-1].item(), abs=1e-12)
    slope_left = (y[1] - y[0]) / 1e-7
    slope_right = (y[3] - y[2]) / 1e-7
    assert slope_left.item() == pytest.approx(slope_right.item(), rel=1e-5)
    assert slope_left.item() == pytest.approx(logdet[0].exp().item(), rel=1e-5)

    theta = _uniform(200, half_width=pi)(torch.Generator().manual_seed(5))
    y, logdet = circular_rational_quadratic_spline(theta, *params, inverse=False)
    back, logdet_inv = circular_rational_quadratic_spline(y, *params, inverse=True)
    assert (back - theta).abs().max() < 1e-12
    assert (logdet + logdet_inv).abs().max() < 1e-12
    # Inputs one period away are wrapped: same output, same logdet.
    for shift in (2 * pi, -4 * pi):
        y_shift, ld_shift = circular_rational_quadratic_spline(
            theta + shift, *params, inverse=False
        )
        assert (y_shift - y).abs().max() < 1e-12 and (ld_shift - logdet).abs().max() < 1e-12


@pytest.mark.parametrize("circular", [False, True])
@pytest.mark.parametrize("inverse", [False, True])
def test_spline_logdet_matches_finite_differences(circular: bool, inverse: bool) -> None:
    h = 1e-6
    half_width = math.pi - 2 * h if circular else 4.0  # 4 > bound: tails included
    x = _uniform(300, half_width=half_width)(torch.Generator().manual_seed(7))
    params = _random_spline_params(x.shape, 6, 6 if circular else 5)

    def spline(v: Tensor) -> tuple[Tensor, Tensor]:
        if circular:
            return circular_rational_quadratic_spline(v, *params, inverse=inverse)
        return rational_quadratic_spline(v, *params, inverse=inverse, bound=3.0)

    _, logdet = spline(x)
    slope = (spline(x + h)[0] - spline(x - h)[0]) / (2 * h)
    assert (logdet - slope.log()).abs().max() < 1e-5


def test_spline_round_trip_in_float32() -> None:
    x = torch.cat([torch.linspace(-5, 5, 1001), torch.tensor([-5.0, 5.0, 0.0])])
    params = _random_spline_params(x.shape, 8, 7, dtype=torch.float32)
    y, logdet = rational_quadratic_spline(x, *params, inverse=False, bound=5.0)
    back, logdet_inv = rational_quadratic_spline(y, *params, inverse=True, bound=5.0)
    assert torch.isfinite(back).all() and torch.isfinite(logdet_inv).all()
    # Tolerance relative to the local conditioning |dx/dy|, which float32 cannot beat.
    err = (back - x).abs() / (1 + (-logdet).exp())
    assert err.max() < 1e-5
    assert (logdet + logdet_inv).abs().max() < 1e-3


def test_normalization_fit_standardizes_data() -> None:
    g = torch.Generator().manual_seed(11)
    data = torch.randn(2000, 3, generator=g) * torch.tensor([0.1, 3.0, 1.0]) + torch.tensor(
        [5.0, -2.0, 0.0]
    )
    norm = Normalization(3).fit(data)
    z, logdet = norm.inverse(data)
    assert z.mean(0).abs().max() < 1e-5
    assert (z.std(0) - 1).abs().max() < 1e-5
    assert torch.allclose(logdet, -data.std(0).log().sum().expand(2000))


def test_mean_free_embedding_is_an_orthonormal_mean_free_isometry() -> None:
    q = helmert_basis(5)
    assert torch.allclose(q.T @ q, torch.eye(4, dtype=q.dtype), atol=1e-14)
    assert q.sum(0).abs().max() < 1e-14

    embed = MeanFreeEmbedding(5, 3)
    z = torch.randn(32, 12)
    x, _ = embed(z)
    assert x.shape == (32, 5, 3)
    assert x.mean(1).abs().max() < 1e-6
    assert torch.allclose(x.square().sum((1, 2)), z.square().sum(1), rtol=1e-5)
    # A standard normal pushed through the embedding is the mean-free normal prior.
    flow = Flow(StandardNormal((12,)), embed, event_shape=(5, 3))
    assert torch.allclose(flow.log_prob(x), MeanFreeNormal(5, 3).log_prob(x), atol=1e-4)


@pytest.mark.parametrize("kind", ["spline", "affine"])
def test_flow_log_prob_of_own_samples(kind: str) -> None:
    torch.manual_seed(13)
    flow = Flow(StandardNormal((4,)), coupling_flow(4, kind=kind, n_layers=4), event_shape=(4,))
    _perturb(flow, torch.Generator().manual_seed(14))
    x, log_q = flow.sample_and_log_prob(256)
    assert log_q.shape == (256,)
    assert (flow.log_prob(x) - log_q).abs().max() < 1e-4


def test_spline_flow_fits_correlated_gaussian() -> None:
    torch.manual_seed(17)
    cov = torch.tensor([[1.0, 0.8], [0.8, 1.0]])
    target = torch.distributions.MultivariateNormal(torch.tensor([0.5, -0.5]), cov)
    train, test = target.sample((4096,)), target.sample((8192,))
    flow = Flow(StandardNormal((2,)), coupling_flow(2, n_layers=4, hidden=(32,)), (2,))
    opt = torch.optim.Adam(flow.parameters(), lr=1e-2)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 250)
    for _ in range(250):
        batch = train[torch.randint(len(train), (512,))]
        loss = -flow.log_prob(batch).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
    with torch.no_grad():
        nll = -flow.log_prob(test).mean().item()
    # The entropy is the lowest NLL any model can reach; the fresh (identity) flow is ~0.75 above.
    entropy = target.entropy().item()
    assert nll < entropy + 0.05, f"NLL {nll:.3f} not within 0.05 nats of the entropy {entropy:.3f}"


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"dim": 1}, "dim"),
        ({"n_layers": 1}, "n_layers"),
        ({"kind": "flow"}, "kind"),
        ({"hidden": (0,)}, "hidden"),
        ({"n_bins": 0}, "n_bins"),
        ({"bound": -1.0}, "bound"),
        ({"circular": [3]}, "circular"),
        ({"circular": [0], "kind": "affine"}, "circular"),
    ],
)
def test_coupling_flow_rejects_bad_arguments(kwargs: dict, argument: str) -> None:
    kwargs = {"dim": 3, **kwargs}
    with pytest.raises(ValueError, match=argument):
        coupling_flow(**kwargs)


@pytest.mark.parametrize("mask", [[True, True, True], [False, False, False], [True, False]])
def test_coupling_rejects_bad_mask(mask: list[bool]) -> None:
    with pytest.raises(ValueError, match="mask"):
        SplineCoupling(3, mask)
