"""Options and process set-up shared by the commands."""

from __future__ import annotations

FF_HELP = "Force field for a PDB system: amber14 (default) or amber99sb-ildn."
SOLVENT_HELP = "Solvent model for a PDB system: vacuum, obc1 or obc2 (default)."
TEMP_HELP = "Temperature in kelvin for a PDB system [300]."
DEBUG_HELP = "Show full tracebacks (also accepted before the command: boltzflow --debug ...)."
SOLVER_HELP = "Sampling integrator of a CNF/tbg model: rk4, dopri5 or gauss-legendre [the run's]."


def set_threads(n: int | None = None) -> int:
    """Torch threads from the free cores (:func:`boltzflow.threads.set_threads`)."""
    from ..threads import set_threads as library_set_threads

    return library_set_threads(n)


def few_samples_warning(metrics: dict[str, object]) -> str | None:
    """A warning line when the Kish ESS of ``metrics`` is under ten samples, else ``None``."""
    from ..sampling import FEW_EFFECTIVE_SAMPLES, few_effective_samples

    n = metrics.get("ess_samples")
    if not few_effective_samples(n):
        return None
    return (f"warning: only {n:.1f} effective samples (Kish ESS × samples, under "
            f"{FEW_EFFECTIVE_SAMPLES}): the reweighted numbers rest on a handful of samples")


def is_main() -> bool:
    """Whether this process is rank 0 (or alone)."""
    from ..training.distributed import world

    return world().is_main


def run_dir(run: str | None, checkpoint: str | None) -> str:
    """The run directory from ``--run``, or from the older ``--checkpoint FILE`` spelling."""
    from pathlib import Path

    from ..errors import BoltzflowError

    if run is not None:
        return run
    if checkpoint is not None:
        path = Path(checkpoint)
        return str(path.parent if path.suffix == ".pt" else path)
    raise BoltzflowError("give --run RUN (the directory `boltzflow train` wrote)")


def sampling_changes(
    model: str, device: str | None, solver: str | None, solver_steps: int | None,
    quadrature_power: float | None, quadrature_nodes: int | None = None,
) -> dict[str, object]:
    """Config changes of the sampling options for a run of kind ``model``."""
    return {"train.device": device, f"{model}.solver": solver,
            f"{model}.solver_steps": solver_steps, f"{model}.quadrature_power": quadrature_power,
            f"{model}.quadrature_nodes": quadrature_nodes}
