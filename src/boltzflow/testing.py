"""Contract checks shipped as library code, used by boltzflow's tests and by yours.

Each ``assert_*`` raises ``AssertionError`` with a message saying what broke.

Example:
    >>> from boltzflow import testing
    >>> testing.assert_bijection(my_layer, torch.randn(8, 4))  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import io
from collections.abc import Callable

import torch
from torch import Tensor, nn


def _flat_jacobian(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """Per-sample Jacobians ``[B, D_out, D_in]`` of ``fn`` (which maps ``[B, ...]`` batch-wise)."""
    jacs = []
    for xi in x:
        j = torch.autograd.functional.jacobian(lambda v: fn(v.unsqueeze(0))[0], xi)
        jacs.append(j.reshape(fn(xi.unsqueeze(0))[0].numel(), xi.numel()))
    return torch.stack(jacs)


def _volume_logdet(jac: Tensor) -> Tensor:
    """``log|det J|`` for square ``J``; the log volume factor ``½ log det(JᵀJ)`` otherwise."""
    d_out, d_in = jac.shape[-2:]
    if d_out == d_in:
        return torch.linalg.slogdet(jac)[1]
    gram = jac.transpose(-1, -2) @ jac if d_out > d_in else jac @ jac.transpose(-1, -2)
    return 0.5 * torch.linalg.slogdet(gram)[1]


def assert_inverse(bijection: nn.Module, z: Tensor, *, atol: float = 1e-5) -> None:
    """``inverse(forward(z)) == z`` and ``forward(inverse(x)) == x``."""
    x, _ = bijection.forward(z)
    z_back, _ = bijection.inverse(x)
    err = (z_back - z).abs().max().item()
    assert err <= atol, f"inverse(forward(z)) differs from z by {err:.3g} > {atol}"
    x_back, _ = bijection.forward(z_back)
    err = (x_back - x).abs().max().item()
    assert err <= atol, f"forward(inverse(x)) differs from x by {err:.3g} > {atol}"


def assert_logdet(bijection: nn.Module, z: Tensor, *, atol: float = 1e-4) -> None:
    """``logdet`` of both directions equals ``slogdet`` of the autograd Jacobian.

    For maps between spaces of different dimension (an embedding of a subspace), the reference
    is the volume factor ``½ log det(JᵀJ)``.
    """
    x, logdet = bijection.forward(z)
    ref = _volume_logdet(_flat_jacobian(lambda v: bijection.forward(v)[0], z))
    err = (logdet - ref).abs().max().item()
    assert err <= atol, f"forward logdet differs from autograd slogdet by {err:.3g} > {atol}"
    x = x.detach()
    _, logdet_inv = bijection.inverse(x)
    ref = _volume_logdet(_flat_jacobian(lambda v: bijection.inverse(v)[0], x))
    err = (logdet_inv - ref).abs().max().item()
    assert err <= atol, f"inverse logdet differs from autograd slogdet by {err:.3g} > {atol}"


def assert_logdets_cancel(bijection: nn.Module, z: Tensor, *, atol: float = 1e-5) -> None:
    """``logdet(forward at z) + logdet(inverse at forward(z)) == 0``."""
    x, ld_f = bijection.forward(z)
    _, ld_i = bijection.inverse(x)
    err = (ld_f + ld_i).abs().max().item()
    assert err <= atol, f"forward and inverse logdets do not cancel: |sum| = {err:.3g} > {atol}"


def assert_gradients_reach_parameters(
    module: nn.Module, loss_fn: Callable[[nn.Module], Tensor]
) -> None:
    """Every trainable parameter of ``module`` gets a finite, non-zero gradient from ``loss_fn``."""
    params = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    module.zero_grad()
    loss_fn(module).backward()
    for name, p in params:
        assert p.grad is not None, f"parameter {name!r} received no gradient"
        assert torch.isfinite(p.grad).all(), f"parameter {name!r} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"parameter {name!r} has an all-zero gradient"


def assert_bijection_gradients(bijection: nn.Module, z: Tensor) -> None:
    """Gradients of ``forward`` and ``inverse`` outputs reach every parameter."""

    def loss(b: nn.Module) -> Tensor:
        x, ld = b.forward(z)
        z2, ld2 = b.inverse(x.detach() + 0.01)
        return (x**2).sum() + ld.sum() + (z2**2).sum() + ld2.sum()

    assert_gradients_reach_parameters(bijection, loss)


def assert_save_load(module: nn.Module, make: Callable[[], nn.Module], x: Tensor) -> None:
    """A fresh ``make()`` loaded with ``module``'s ``state_dict`` gives the same output on ``x``."""
    buf = io.BytesIO()
    torch.save(module.state_dict(), buf)
    buf.seek(0)
    clone = make()
    clone.load_state_dict(torch.load(buf, weights_only=True))
    out_a, out_b = module(x), clone(x)
    if isinstance(out_a, tuple):
        out_a, out_b = out_a[0], out_b[0]
    assert torch.allclose(out_a, out_b), "output differs after save/load of the state_dict"


def assert_force_is_minus_gradient(
    energy: nn.Module, x: Tensor, *, rtol: float = 1e-4, atol: float = 1e-5
) -> None:
    """``energy.force(x) == -d energy(x) / dx`` by central finite differences (float64)."""
    x = x.detach().to(torch.float64)
    energy = copy.deepcopy(energy).to(torch.float64)
    f = energy.force(x)
    assert f.shape == x.shape, f"force shape {list(f.shape)} != x shape {list(x.shape)}"
    eps = 1e-6
    flat = x.reshape(len(x), -1)
    num = torch.empty_like(flat)
    for k in range(flat.shape[1]):
        dx = torch.zeros_like(flat)
        dx[:, k] = eps
        up = energy.energy((flat + dx).reshape(x.shape))
        down = energy.energy((flat - dx).reshape(x.shape))
        num[:, k] = -(up - down) / (2 * eps)
    ok = torch.allclose(f.reshape(len(x), -1), num, rtol=rtol, atol=atol)
    err = (f.reshape(len(x), -1) - num).abs().max().item()
    assert ok, f"force differs from -grad(energy) by up to {err:.3g}"


def assert_energy_contract(energy: nn.Module, x: Tensor) -> None:
    """Shapes (``[B]`` out, bad shapes rejected), finiteness, force = -grad, save/load."""
    u = energy.energy(x)
    assert u.shape == (x.shape[0],), f"energy must return [B]={x.shape[0]}, got {list(u.shape)}"
    assert torch.isfinite(u).all(), "energy is not finite on the test configurations"
    try:
        energy.energy(x.reshape(x.shape[0], -1, 1))
    except ValueError:
        pass
    else:
        raise AssertionError("energy accepted a batch of the wrong event shape")
    assert_force_is_minus_gradient(energy, x)


def assert_bijection_contract(
    bijection: nn.Module,
    z: Tensor,
    make: Callable[[], nn.Module] | None = None,
    *,
    atol: float = 1e-5,
    logdet_atol: float = 1e-4,
    volume_logdet: bool = True,
) -> None:
    """All bijection checks: round-trip, logdet vs autograd, cancellation, gradients, save/load.

    Args:
        bijection: the map under test.
        z: inputs ``[B, ...]`` of ``forward``.
        make: builds a fresh bijection of the same architecture (for the save/load check).
        atol: tolerance of the round trips and of the cancellation of the two logdets (an ODE
            flow's inverse is only as exact as its solver).
        logdet_atol: tolerance of the logdet against the autograd Jacobian.
        volume_logdet: compare the logdet with the Jacobian's ``slogdet`` (or volume factor
            ``½ log det(JᵀJ)`` between spaces of different dimension); False for a map whose
            logdet is defined against another measure (``InternalCoordinates``: the rigid-body
            factored Jacobian), which its own tests check.
    """
    assert_inverse(bijection, z, atol=atol)
    assert_logdets_cancel(bijection, z, atol=atol)
    if volume_logdet:
        assert_logdet(bijection, z, atol=logdet_atol)
    if any(p.requires_grad for p in bijection.parameters()):
        assert_bijection_gradients(bijection, z)
    if make is not None:
        assert_save_load(bijection, make, z)


def _random_orthogonal(d: int, *, proper: bool, generator: torch.Generator, dtype) -> Tensor:
    """A Haar-random orthogonal ``d × d`` matrix with determinant ``+1`` (``proper``) or ``-1``."""
    q, r = torch.linalg.qr(torch.randn(d, d, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if (torch.linalg.det(q) > 0) != proper:
        q[:, 0] = -q[:, 0]
    return q.to(dtype)


def _random_type_permutation(types: Tensor, generator: torch.Generator) -> Tensor:
    """A random permutation ``[N]`` that only exchanges particles of equal type."""
    perm = torch.arange(len(types))
    for kind in torch.unique(types):
        idx = torch.nonzero(types == kind).flatten()
        perm[idx] = idx[torch.randperm(len(idx), generator=generator)]
    return perm


def assert_equivariant(
    field: nn.Module,
    x: Tensor,
    t: Tensor,
    context: object = None,
    *,
    spatial_dim: int | None = None,
    types: Tensor | None = None,
    rotations: bool = True,
    reflections: bool = True,
    translations: bool = True,
    permutations: bool = True,
    mean_free: bool = True,
    n_trials: int = 3,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    seed: int = 0,
) -> None:
    """A particle vector field ``v = field(t, x, context)`` respects the symmetries of space.

    For random group elements it checks, on ``x: [B, N, d]`` and ``t: [B]``:

    * rotations ``Q`` (``det Q = 1``; with ``reflections`` also ``det Q = -1``):
      ``v(x Q) = v(x) Q``;
    * translations ``a``: ``v(x + a) = v(x)`` (a velocity does not move with the frame);
    * permutations ``π`` that exchange only particles of equal type: ``v(π x) = π v(x)``;
    * ``mean_free``: ``Σ_i v_i = 0``.

    Each tolerance is ``atol + rtol · max|v|``. Switch off the symmetries a field does not have
    (an :class:`~boltzflow.continuous.MLPField` is only translation invariant).

    Args:
        field: the vector field.
        x: configurations ``[B, N, d]``.
        t: times ``[B]``.
        context: passed to the field unchanged (a permutation within types leaves it as is).
        spatial_dim: ``d``; checked against ``x``.
        types: type per particle ``[N]``; default ``context.atom_types`` or all identical.
        seed: seed of the random group elements.

    Example:
        >>> assert_equivariant(EGNN(3), torch.randn(4, 5, 3), torch.rand(4))  # doctest: +SKIP
    """
    if x.dim() != 3:
        raise ValueError(f"x must be [B, N, d], got {list(x.shape)}")
    d = x.shape[-1]
    if spatial_dim is not None and spatial_dim != d:
        raise ValueError(f"spatial_dim={spatial_dim} but x has d={d}")
    if types is None:
        types = getattr(context, "atom_types", None)
        types = torch.zeros(x.shape[1], dtype=torch.long) if types is None else types
    types = types.reshape(-1, x.shape[1])[0].cpu()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        v = field(t, x, context)
    assert v.shape == x.shape, f"field returned {list(v.shape)} for x of shape {list(x.shape)}"
    tol = atol + rtol * float(v.abs().max())

    def check(name: str, got: Tensor, want: Tensor) -> None:
        err = float((got - want).abs().max())
        assert err <= tol, f"field is not {name}: max deviation {err:.3g} > {tol:.3g}"

    if mean_free:
        check("mean-free", v.sum(dim=1), torch.zeros_like(v[:, 0]))
    with torch.no_grad():
        for _ in range(n_trials):
            if rotations:
                q = _random_orthogonal(d, proper=True, generator=gen, dtype=x.dtype).to(x.device)
                check("rotation equivariant", field(t, x @ q, context), v @ q)
            if reflections:
                q = _random_orthogonal(d, proper=False, generator=gen, dtype=x.dtype).to(x.device)
                check("reflection equivariant", field(t, x @ q, context), v @ q)
            if translations:
                a = 3.0 * torch.randn(x.shape[0], 1, d, generator=gen, dtype=x.dtype)
                check("translation invariant", field(t, x + a.to(x.device), context), v)
            if permutations:
                perm = _random_type_permutation(types, gen).to(x.device)
                check("permutation equivariant", field(t, x[:, perm], context), v[:, perm])


def rigid_factored_logdet(ic: nn.Module, z: Tensor) -> Tensor:
    """``log|det ∂x/∂(t, ω, z)|`` ``[B]`` at ``ω = 0`` of ``x = exp([ω]×) x(z) + t`` (square),
    by autograd: the Jacobian of Cartesian space factored into translation × rotation ×
    internal coordinates, which :class:`~boltzflow.transforms.InternalCoordinates`'s ``forward``
    logdet must equal. Rotation vectors ``ω`` have unit Haar density at the identity in the
    normalization with total volume ``8π²``.

    Args:
        ic: an ``InternalCoordinates`` (``forward(z[None])[0]``: ``[1, n_atoms, 3]``).
        z: flat internal coordinates ``[B, 3 n_atoms - 6]`` (float64 for tight checks).
    """

    def cartesian(v: Tensor) -> Tensor:
        t, w, q = v[:3], v[3:6], v[6:]
        generator = torch.zeros(3, 3, dtype=v.dtype)
        generator[0, 1], generator[0, 2], generator[1, 2] = -w[2], w[1], -w[0]
        rotation = torch.linalg.matrix_exp(generator - generator.T)
        return (ic.forward(q[None])[0][0] @ rotation.T + t).reshape(-1)

    out = []
    for zi in z:
        v = torch.cat([zi.new_zeros(6), zi])
        jac = torch.autograd.functional.jacobian(cartesian, v)
        out.append(torch.linalg.slogdet(jac)[1])
    return torch.stack(out)
