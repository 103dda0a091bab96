"""Continuous flows: field equivariance, divergences, solvers, integration and the CNF bijection."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from boltzflow import testing
from boltzflow.continuous import (
    EGNN,
    RK4,
    ContinuousFlow,
    Dopri5,
    Euler,
    Exact,
    Hutchinson,
    Midpoint,
    MLPField,
    ParticleContext,
    ParticleScale,
    VectorField,
    build_cnf,
    integrate,
    particle_context,
    path_length,
    subspace_basis,
)
from boltzflow.distributions import MeanFreeNormal
from boltzflow.flow import Flow
from boltzflow.geometry import center
from boltzflow.training import flow_matching_loss

#: A molecule-like typing: particles 1-3 exchangeable (a methyl's H), 5-6 exchangeable.
TYPES = torch.tensor([0, 1, 1, 1, 2, 3, 3])


def _x(b: int, n: int, d: int, dtype=torch.float32) -> Tensor:
    return center(torch.randn(b, n, d, dtype=dtype))


class LinearField(VectorField):
    """``v = A x`` on the flattened configuration (the test bed of the trace estimators)."""

    def __init__(self, a: Tensor):
        super().__init__()
        self.register_buffer("a", a)

    def velocity(self, t: Tensor, x: Tensor, context=None) -> Tensor:
        return (x.flatten(1) @ self.a.T).reshape(x.shape)


def _jacobian_traces(fn, x: Tensor, basis: Tensor | None = None) -> Tensor:
    """``tr(Uᵀ J U)`` per sample from the dense autograd Jacobian (``U = I`` by default)."""
    jac = testing._flat_jacobian(fn, x)  # [B, D, D]
    if basis is None:
        return torch.diagonal(jac, dim1=-2, dim2=-1).sum(-1)
    u = basis.flatten(1).T  # [D, M]
    return torch.diagonal(u.T @ jac @ u, dim1=-2, dim2=-1).sum(-1)


FIELDS = {
    "egnn-2d": lambda: (EGNN(2, hidden=16, n_layers=3), _x(6, 4, 2), None),
    "egnn-3d-typed": lambda: (
        EGNN(3, n_types=4, hidden=16, n_layers=2),
        _x(5, 7, 3),
        ParticleContext(TYPES, 4),
    ),
    "mlp-particles": lambda: (MLPField((4, 2), hidden=(32, 32)), _x(6, 4, 2), None),
    "mlp-flat": lambda: (MLPField((3,), hidden=(16, 16)), torch.randn(5, 3), None),
}


@pytest.mark.parametrize("name", ["egnn-2d", "egnn-3d-typed"])
def test_egnn_is_equivariant(name):
    field, x, context = FIELDS[name]()
    testing.assert_equivariant(field, x, torch.rand(len(x)), context, spatial_dim=x.shape[-1])


def test_egnn_distinguishes_atom_types():
    """Exchanging atoms of different types must change the field: types are not decoration."""
    field, x, context = FIELDS["egnn-3d-typed"]()
    with pytest.raises(AssertionError, match="permutation"):
        testing.assert_equivariant(
            field, x, torch.rand(len(x)), context, types=torch.zeros(7, dtype=torch.long)
        )


def test_mlp_field_is_translation_invariant_and_mean_free():
    field, x, _ = FIELDS["mlp-particles"]()
    testing.assert_equivariant(
        field, x, torch.rand(len(x)), rotations=False, reflections=False, permutations=False
    )


def test_egnn_checks_its_inputs():
    field = EGNN(3, n_types=4, hidden=8, n_layers=1)
    with pytest.raises(ValueError, match="n_types=4"):
        field(torch.rand(2), _x(2, 7, 3))
    with pytest.raises(ValueError, match=r"\[B, N, 3\]"):
        field(torch.rand(2), _x(2, 7, 2), ParticleContext(TYPES, 4))
    with pytest.raises(ValueError, match="t must be"):
        field(torch.rand(3), _x(2, 7, 3), ParticleContext(TYPES, 4))


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_gradients_reach_every_parameter(name):
    field, x, context = FIELDS[name]()
    x1 = torch.randn_like(x)

    def loss(f: nn.Module) -> Tensor:
        return flow_matching_loss(f, x, x1, torch.rand(len(x)), context)

    testing.assert_gradients_reach_parameters(field, loss)


@pytest.mark.parametrize("mode", ["reverse", "forward"])
@pytest.mark.parametrize("name", sorted(FIELDS))
def test_exact_divergence_is_the_jacobian_trace(name, mode):
    field, x, context = FIELDS[name]()
    field = field.double()
    x = x.double()
    t = torch.full((len(x),), 0.3, dtype=x.dtype)

    def fn(y: Tensor) -> Tensor:
        return field(t[: len(y)], y, context)

    with torch.no_grad():
        v, div = Exact(mode=mode, chunk_size=3)(fn, x)
    torch.testing.assert_close(v, fn(x).detach())
    # The field is mean-free, so the full trace equals the trace restricted to the subspace.
    torch.testing.assert_close(div, _jacobian_traces(fn, x), rtol=1e-8, atol=1e-8)
    basis = subspace_basis(x.shape[1:], mean_free=True, dtype=x.dtype)
    torch.testing.assert_close(div, _jacobian_traces(fn, x, basis), rtol=1e-8, atol=1e-8)


def test_divergence_is_differentiable_in_the_parameters():
    """Likelihood training backpropagates through the exact trace (second derivatives)."""
    field, x, _ = FIELDS["egnn-2d"]()
    field, x = field.double(), x.double()
    t = torch.full((len(x),), 0.3, dtype=x.dtype)
    weight = field.layers[0].edge.weight
    (grad,) = torch.autograd.grad(Exact()(lambda y: field(t, y), x)[1].sum(), weight)
    eps = 1e-6
    with torch.no_grad():
        traces = []
        for sign in (1, -1):
            weight[0, 0] += sign * eps
            traces.append(Exact()(lambda y: field(t, y), x)[1].sum())
            weight[0, 0] -= sign * eps
    assert float(grad[0, 0]) == pytest.approx(float(traces[0] - traces[1]) / (2 * eps), rel=1e-5)


def test_subspace_trace_differs_from_full_trace_for_a_field_that_is_not_mean_free():
    """Why the divergence runs over the subspace: without a mean-free field the traces differ."""
    torch.manual_seed(1)
    field = LinearField(torch.randn(8, 8, dtype=torch.float64))
    x = _x(3, 4, 2, torch.float64)
    t = torch.zeros(3, dtype=x.dtype)
    _, div_sub = Exact()(lambda y: field(t, y), x)
    _, div_full = Exact(mean_free=False)(lambda y: field(t, y), x)
    torch.testing.assert_close(div_full, torch.full_like(div_full, float(field.a.trace())))
    # P = I - (1/N) 11ᵀ ⊗ I_d projects on the mean-free subspace.
    proj = torch.eye(8, dtype=x.dtype) - torch.kron(
        torch.full((4, 4), 0.25, dtype=x.dtype), torch.eye(2, dtype=x.dtype)
    )
    subspace_trace = float((proj @ field.a @ proj).trace())
    torch.testing.assert_close(div_sub, torch.full_like(div_sub, subspace_trace))
    assert (div_sub - div_full).abs().min() > 1e-3


@pytest.mark.parametrize("noise", ["rademacher", "gaussian"])
@pytest.mark.parametrize("shape", [(12,), (4, 3)])
def test_hutchinson_is_unbiased_on_a_linear_field(shape, noise):
    torch.manual_seed(2)
    dim = math.prod(shape)
    field = LinearField(torch.randn(dim, dim, dtype=torch.float64))
    x = torch.randn(4000, *shape, dtype=torch.float64)
    t = torch.zeros(len(x), dtype=x.dtype)
    with torch.no_grad():
        _, exact = Exact()(lambda y: field(t, y), x)
        _, est = Hutchinson(noise=noise)(lambda y: field(t, y), x)
    # A linear field has the same trace everywhere: 4000 independent single-probe estimates.
    assert torch.allclose(exact, exact[0].expand_as(exact))
    stderr = float(est.std()) / math.sqrt(len(est))
    assert abs(float(est.mean()) - float(exact[0])) < 4 * stderr
    more = Hutchinson(n_probes=16, noise=noise)(lambda y: field(t[:200], y), x[:200])[1]
    assert more.std() < est.std() / 2  # averaging probes reduces the variance


@pytest.mark.parametrize(
    "solver, tol",
    [(Euler(200), 2e-2), (Midpoint(50), 1e-3), (RK4(10), 1e-5), (Dopri5(1e-8, 1e-8), 1e-6)],
)
def test_solvers_integrate_a_linear_ode(solver, tol):
    """``dx/dt = A x`` has ``x(1) = exp(A) x(0)`` and ``logdet = tr A``, backwards too."""
    torch.manual_seed(3)
    a = 0.5 * torch.randn(6, 6, dtype=torch.float64)
    field = LinearField(a)
    x0 = torch.randn(5, 6, dtype=torch.float64)
    sol = integrate(field, x0, solver=solver, divergence=Exact())
    torch.testing.assert_close(sol.x, x0 @ torch.linalg.matrix_exp(a).T, rtol=tol, atol=tol)
    torch.testing.assert_close(sol.logdet, torch.full((5,), float(a.trace()), dtype=x0.dtype))
    back = integrate(field, sol.x, (1.0, 0.0), solver=solver, divergence=Exact())
    torch.testing.assert_close(back.x, x0, rtol=tol, atol=tol)
    torch.testing.assert_close(back.logdet, -sol.logdet)
    if hasattr(solver, "stages"):
        assert sol.nfe == solver.n_steps * solver.stages


def test_path_length_of_a_constant_field():
    class Constant(VectorField):
        def velocity(self, t, x, context=None):
            return torch.ones_like(x) * torch.tensor([3.0, 4.0])

    assert path_length(Constant(), torch.zeros(3, 2), solver=Euler(4)) == pytest.approx(5.0)
    sol = integrate(Constant(), torch.zeros(3, 2), (1.0, 0.0), solver=RK4(2), path_length=True)
    torch.testing.assert_close(sol.path_length, torch.full((3,), 5.0))


def _cnf(solver, dtype=torch.float64) -> ContinuousFlow:
    torch.manual_seed(4)
    field = EGNN(2, hidden=16, n_layers=2).to(dtype)
    return ContinuousFlow(field, solver, Exact())


def test_continuous_flow_is_a_bijection_with_consistent_logdets():
    cnf = _cnf(RK4(6))
    z = _x(3, 4, 2, torch.float64)
    with torch.no_grad():
        testing.assert_inverse(cnf, z, atol=1e-4)
        testing.assert_logdets_cancel(cnf, z, atol=1e-4)
    # The flow of a translation-invariant, mean-free field moves the centre rigidly, so the
    # Jacobian on all N·d coordinates has the determinant of the subspace map.
    testing.assert_logdet(cnf, z, atol=1e-4)


def test_cnf_log_q_of_its_own_samples_agrees_in_both_directions():
    flow = Flow(MeanFreeNormal(4, 2).double(), _cnf(Dopri5(1e-7, 1e-7)), (4, 2))
    with torch.no_grad():
        x, log_q = flow.sample_and_log_prob(16)
        assert x.shape == (16, 4, 2) and log_q.shape == (16,)
        assert x.sum(1).abs().max() < 1e-10  # stays on the mean-free subspace
        torch.testing.assert_close(flow.log_prob(x), log_q, rtol=0, atol=1e-5)
        # log_q does not depend on where the configuration's centre is
        torch.testing.assert_close(flow.log_prob(x + 2.0), log_q, rtol=0, atol=1e-5)


def test_hutchinson_cnf_log_q_is_unbiased():
    flow = Flow(MeanFreeNormal(4, 2).double(), _cnf(RK4(4)), (4, 2))
    x = _x(1, 4, 2, torch.float64).expand(800, 4, 2)
    with torch.no_grad():
        exact = flow.log_prob(x[:1])
        flow.bijection.divergence = Hutchinson()
        noisy = flow.log_prob(x)
    assert abs(float(noisy.mean() - exact)) < 4 * float(noisy.std()) / math.sqrt(len(x))


def test_particle_scale_and_build_cnf():
    from boltzflow import systems

    system = systems.get("dw4")
    field = EGNN(2, hidden=8, n_layers=1)
    flow = build_cnf(system, field, particle_context(system), scale=2.0, solver=RK4(2))
    plain = build_cnf(system, field, particle_context(system), scale=1.0, solver=RK4(2))
    x = _x(3, 4, 2)
    with torch.no_grad():
        expected = plain.log_prob(x / 2.0) - 3 * 2 * math.log(2.0)
        torch.testing.assert_close(flow.log_prob(x), expected, rtol=1e-5, atol=1e-5)
    # The volume change on the (N - 1)·d-dimensional subspace, not on all N·d coordinates.
    _, logdet = ParticleScale(2.0, 4, 2).forward(_x(2, 4, 2))
    torch.testing.assert_close(logdet, torch.full((2,), 6 * math.log(2.0)))


def test_atom_types_of_alanine_dipeptide():
    from boltzflow import systems

    system = systems.get("aldp-implicit")
    ctx = particle_context(system)
    # 22 atoms, three methyl groups whose hydrogens are exchangeable: 22 - 3·2 = 16 types.
    assert ctx.n_types == 16 and ctx.atom_types.shape == (22,)
    assert particle_context(system, scheme="element").n_types == 4
    field = EGNN(3, n_types=16, hidden=8, n_layers=2)
    x = system.positions.to(torch.float32)[None].repeat(3, 1, 1) + 0.02 * torch.randn(3, 22, 3)
    testing.assert_equivariant(field, x, torch.rand(3), ctx)
