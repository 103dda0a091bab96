"""``ContinuousFlow``: a vector field as a :class:`~boltzflow.transforms.Bijection` (a CNF)."""

from __future__ import annotations

from torch import Tensor

from ..transforms.base import Bijection
from .divergence import Divergence, Exact
from .field import ParticleContext, VectorField
from .integrate import integrate
from .solvers import Dopri5, Solver

__all__ = ["ContinuousFlow"]


class ContinuousFlow(Bijection):
    """The time-1 map of ``dx/dt = field(t, x, context)``: prior (``t = 0``) to data (``t = 1``).

    ``forward(z)`` integrates from 0 to 1 and returns ``(x, logdet)`` with
    ``logdet = log|det ∂x/∂z| = ∫₀¹ div v dt`` along the trajectory; ``inverse(x)`` integrates
    from 1 to 0 and returns ``-∫₀¹ div v dt``. For particle systems the divergence is the one
    restricted to the mean-free subspace (see :mod:`boltzflow.continuous.divergence`), matching
    :class:`~boltzflow.distributions.MeanFreeNormal`, so

        ``Flow(MeanFreeNormal(n, d), ContinuousFlow(field, ...), (n, d))``

    gives samples with their ``log_q`` (``sample_and_log_prob``) and ``log_q`` of given
    configurations (``log_prob``). With a fixed-step solver the two directions are inverse up to
    the discretization error; :meth:`integrate` exposes the number of evaluations and path length.

    Args:
        field: the vector field.
        solver: ODE solver (default adaptive :class:`Dopri5`; fixed-step :class:`RK4` is cheaper
            for the straight paths of OT flow matching).
        divergence: :class:`Exact` (default) or :class:`Hutchinson` (a noisy, unbiased
            ``log_q``: fine for training, not for importance weights).
        context: what the field needs to know about the particles (atom types).

    Example:
        >>> flow = Flow(MeanFreeNormal(4, 2), ContinuousFlow(EGNN(2), RK4(20)), (4, 2))  # doctest: +SKIP
        >>> x, log_q = flow.sample_and_log_prob(100)  # doctest: +SKIP
    """

    def __init__(
        self,
        field: VectorField,
        solver: Solver | None = None,
        divergence: Divergence | None = None,
        *,
        context: ParticleContext | None = None,
    ):
        super().__init__()
        self.field = field
        self.solver = Dopri5() if solver is None else solver
        self.divergence = Exact() if divergence is None else divergence
        self.context = context

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        sol = integrate(
            self.field,
            z,
            (0.0, 1.0),
            context=self._context(z),
            solver=self.solver,
            divergence=self.divergence,
        )
        return sol.x, sol.logdet

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        sol = integrate(
            self.field,
            x,
            (1.0, 0.0),
            context=self._context(x),
            solver=self.solver,
            divergence=self.divergence,
        )
        return sol.x, sol.logdet

    def _context(self, x: Tensor) -> ParticleContext | None:
        if self.context is None or self.context.atom_types.device == x.device:
            return self.context
        return self.context.to(x.device)
