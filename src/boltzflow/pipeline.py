"""The run-directory workflow behind the CLI: train → sample → evaluate (metrics, plots, report).

A run directory holds::

    config.yaml      the resolved configuration
    data.npz         the reference samples used (train / test split), with the system id
    checkpoint.pt    latest checkpoint (atomic), resumable: a coupling flow, or a CNF
                     (``model: cnf``, trained by flow matching: :mod:`boltzflow.cnf_pipeline`)
    train_log.csv    loss, parts, learning rate and gradient norm over steps
    samples.npz      model samples with x, log_q, u, log_w
    metrics.json     ESS, clipped ESS, NLL, ΔF, … with the system id
    report.md        a readable summary with the figures (*.png)
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import cnf_pipeline, systems
from .analysis.free_energy import free_energy_difference, free_energy_difference_quadrature
from .analysis.metrics import negative_log_likelihood
from .config import CNF_MODELS, TrainConfig, read_config_file
from .errors import BoltzflowError, ConfigError
from .flow import Flow
from .io import write_atomic, write_text_atomic
from .models import build_flow
from .sampling import Samples, draw, effective_sample_size, effective_sample_size_clipped
from .training import combined_loss, distributed, fit, load_checkpoint

CONFIG_NAME = "config.yaml"
DATA_NAME = "data.npz"
SAMPLES_NAME = "samples.npz"
METRICS_NAME = "metrics.json"


@dataclass
class Run:
    """A loaded run: its directory, config, system and trained flow."""

    path: Path
    config: TrainConfig
    system: systems.System
    flow: Flow


def _dtype(config: TrainConfig) -> torch.dtype:
    return getattr(torch, config.dtype)


def _device(config: TrainConfig) -> torch.device:
    if config.device == "cuda":
        if not torch.cuda.is_available():
            raise BoltzflowError("device 'cuda' was asked for but no CUDA GPU is visible; use cpu")
        return torch.device("cuda", distributed.world().local_rank)
    return torch.device(config.device)


def _prepare_out_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BoltzflowError(f"cannot create output directory {out}: {exc.strerror}") from exc
    if not os.access(out, os.W_OK):
        raise BoltzflowError(f"output directory {out} is not writable; choose another --out")


def resolve_system(config: TrainConfig) -> systems.System:
    """The config's system: a registry id or a PDB file with its force field and solvent."""
    return systems.resolve(
        config.system,
        forcefield=config.forcefield or None,
        solvent=config.solvent or None,
        temperature=config.temperature or None,
    )


def _dataset_samples(system: systems.System, config: TrainConfig) -> torch.Tensor:
    """Frames of an MD dataset, checked against the system, centred and aligned (float32)."""
    from .data import Dataset
    from .geometry import align

    dataset = Dataset.load(config.data)
    if dataset.system_id != system.id:
        raise BoltzflowError(
            f"dataset {config.data} is for system {dataset.system_id!r}, not {system.id!r}; "
            f"simulate it with `boltzflow simulate {system.id}`"
        )
    x = dataset.positions.to(torch.float64)
    ref = getattr(system, "positions", None)
    if ref is not None:
        x = align(x, ref.to(torch.float64))
    return x.to(torch.float32)


def reference_data(
    system: systems.System, config: TrainConfig, path: Path
) -> dict[str, torch.Tensor]:
    """Train/test reference samples, cached in ``path`` so a resumed run reuses them.

    Toys draw fresh reference samples; molecules read an MD dataset (``config.data``), whose
    last frames (in time) are held out as the test set, since neighbouring frames correlate.
    """
    if path.exists():
        data = np.load(path)
        if str(data["system_id"]) == system.id:
            return {"train": torch.from_numpy(data["train"]), "test": torch.from_numpy(data["test"])}
    if config.data:
        x = _dataset_samples(system, config)
        n_test = min(config.n_test, len(x) // 5)
        train, test = x[: len(x) - n_test], x[len(x) - n_test :]
        if len(train) > config.n_data:  # thin evenly in time
            train = train[torch.linspace(0, len(train) - 1, config.n_data).long()]
        split = {"train": train, "test": test}
    elif system.reference_sampler is not None:
        x = system.sample_reference(config.n_data + config.n_test, seed=config.seed)
        split = {"train": x[: config.n_data], "test": x[config.n_data :]}
    else:
        raise BoltzflowError(
            f"system {system.id!r} has no built-in reference samples: pass a dataset with "
            f"--data (make one with `boltzflow simulate {system.id}`), or set w_nll = 0 to "
            "train on the energy alone"
        )
    write_atomic(path, lambda f: np.savez(
        f, train=split["train"].numpy(), test=split["test"].numpy(), system_id=np.array(system.id)
    ))
    return split


def is_cnf(config: TrainConfig) -> bool:
    """Whether ``config`` trains a continuous flow (by flow matching) rather than couplings."""
    return config.model in CNF_MODELS


def train(config: TrainConfig, out: str | Path, *, progress: bool = True) -> Run:
    """Train a flow on ``config.system``; resumes if ``out`` holds the same run.

    ``model: cnf`` trains a continuous flow by flow matching (:mod:`boltzflow.cnf_pipeline`);
    the run directory, data, checkpoints and distributed training work alike.

    Raises:
        BoltzflowError: ``out`` holds a run with another configuration, or is not writable.
    """
    out = Path(out)
    w = distributed.init(config.device)
    batch_keys = ("batch_size",) if is_cnf(config) else ("batch_size", "kl_batch_size")
    for key in batch_keys:
        if getattr(config, key) % w.size:
            raise BoltzflowError(
                f"config key {key!r} ({getattr(config, key)}) must be divisible by the number of "
                f"ranks ({w.size})"
            )
    if w.is_main:
        _prepare_out_dir(out)
        _write_config(config, out)
    distributed.barrier()
    system = resolve_system(config)
    torch.manual_seed(config.seed)
    data = None
    if config.w_nll > 0:
        if w.is_main:
            data = reference_data(system, config, out / DATA_NAME)
        distributed.barrier()
        if not w.is_main:
            data = reference_data(system, config, out / DATA_NAME)  # reads rank 0's file
    device, dtype = _device(config), _dtype(config)
    if is_cnf(config):
        flow = cnf_pipeline.train(
            system, config, data["train"], out, device=device, dtype=dtype, progress=progress
        )
        distributed.barrier()
        return Run(out, config, system, flow)
    flow = build_flow(system, config, data["train"] if data else None).to(device, dtype)
    energy = system.energy.to(device, dtype)
    train_x = data["train"].to(device, dtype) if data else None
    batch, kl_batch = config.batch_size // w.size, config.kl_batch_size // w.size

    def loss_fn(step: int) -> dict[str, torch.Tensor]:
        # Per-step seeds: a resumed or distributed run draws exactly the same global batch.
        x = None
        if train_x is not None:
            gen = torch.Generator().manual_seed(distributed.step_seed(config.seed, step))
            idx = torch.randint(len(train_x), (config.batch_size,), generator=gen)
            x = train_x[idx[w.rank * batch : (w.rank + 1) * batch].to(device)]
        torch.manual_seed(distributed.step_seed(config.seed, step, w.rank))
        w_kl = config.w_kl if step >= config.kl_start else 0.0
        parts = combined_loss(
            flow, energy, x, w_nll=config.w_nll, w_kl=w_kl,
            n_samples=kl_batch, u_high=config.u_high,
        )
        if config.w_kl > 0 and "kl" not in parts:  # before kl_start: keep the log's columns
            parts["kl"] = torch.full((), float("nan"))
        return parts

    fit(
        flow, loss_fn, steps=config.steps, lr=config.lr, schedule=config.lr_schedule,
        warmup=config.warmup, clip_grad=config.clip_grad, out_dir=out,
        checkpoint_every=config.checkpoint_every, progress=progress,
        metadata={"system": system.id, "model": config.model, "kind": "coupling-flow"},
    )
    distributed.barrier()
    return Run(out, config, system, flow)


def _write_config(config: TrainConfig, out: Path) -> None:
    """Write the resolved config; refuse to mix it into a started run with another config."""
    config_path = out / CONFIG_NAME
    if config_path.exists() and (out / "checkpoint.pt").exists():
        previous = read_config_file(config_path)
        try:  # a run written before keys were added: those keys take their defaults
            previous = TrainConfig.from_dict(previous).to_dict()
        except ConfigError:
            pass
        differing = sorted(k for k, v in config.to_dict().items() if previous.get(k) != v)
        if differing:
            raise BoltzflowError(
                f"{out} already holds a run with a different configuration "
                f"(keys: {', '.join(differing)}); use another --out or delete it"
            )
    import yaml

    write_text_atomic(config_path, yaml.safe_dump(config.to_dict(), sort_keys=False))


def load_run(path: str | Path) -> Run:
    """Load a trained run directory (config + latest checkpoint)."""
    path = Path(path)
    if not (path / CONFIG_NAME).exists():
        raise BoltzflowError(f"{path} is not a run directory (no {CONFIG_NAME}); train first")
    config = TrainConfig.from_dict(read_config_file(path / CONFIG_NAME), source=str(path))
    system = resolve_system(config)
    state = load_checkpoint(path / "checkpoint.pt")
    meta = state.get("metadata", {})
    kind, what = ("coupling-flow", "a coupling flow")
    if is_cnf(config):
        kind, what = cnf_pipeline.KIND, "a CNF"
    if meta.get("system") != system.id or meta.get("kind") != kind:
        raise BoltzflowError(
            f"checkpoint in {path} is for {meta.get('kind')!r} on {meta.get('system')!r}, "
            f"not {what} on {system.id!r} as its config (model: {config.model}) says"
        )
    if is_cnf(config):
        flow = cnf_pipeline.load_flow(system, config, state, path)
    else:
        flow = build_flow(system, config)
        try:
            flow.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise BoltzflowError(f"checkpoint in {path} does not match its config: {exc}") from exc
    flow = flow.to(_device(config), _dtype(config)).eval()
    return Run(path, config, system, flow)


def sample(run: Run, n: int, *, seed: int | None = None, progress: bool = True) -> Samples:
    """Draw ``n`` samples, score and weight them, and save ``samples.npz`` in the run."""
    w = distributed.init(run.config.device)
    base_seed = run.config.seed + 1 if seed is None else seed
    torch.manual_seed(distributed.step_seed(base_seed, -1, w.rank) if w.distributed else base_seed)
    energy = run.system.energy.to(_device(run.config), _dtype(run.config))
    n_local = -(-n // w.size)  # equal shards for all_gather; trimmed to n below
    bar = None
    if progress and w.is_main:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc="sample", unit="x", dynamic_ncols=True, disable=None)
    t0 = time.perf_counter()
    try:
        samples = draw(
            run.flow, energy, n_local, batch_size=_draw_batch(run.config),
            progress=(lambda d: bar.update(d - bar.n)) if bar else None,
        )
    finally:
        if bar is not None:
            bar.close()
    if w.distributed:
        samples = Samples(
            *(distributed.gather_cat(t)[:n] for t in (samples.x, samples.log_q, samples.u, samples.log_w))
        )
    if w.is_main:
        samples.save(run.path / SAMPLES_NAME, system_id=run.system.id)
        (run.path / "sample_time.txt").write_text(f"{time.perf_counter() - t0:.3f}\n")
    distributed.barrier()
    return samples


def _draw_batch(config: TrainConfig) -> int:
    """Samples per chunk: a CNF's ODE solve with the exact divergence is memory-bound."""
    return config.ode_batch_size if is_cnf(config) else 10_000


def evaluate(run: Run, *, plots: bool = True) -> dict[str, Any]:
    """Metrics (and plots + report) of a run's samples; writes ``metrics.json``.

    A CNF run also gets ``mean_path_length`` (data units) and ``n_nll`` (held-out samples in
    its NLL, at most ``n_nll_cnf``); on a molecule its D-form samples are mirrored first
    (``n_mirrored``; see :func:`~boltzflow.analysis.validity.fix_chirality_by_mirroring`).
    """
    samples_path = run.path / SAMPLES_NAME
    if not samples_path.exists():
        sample(run, run.config.n_samples, progress=False)
    samples = Samples.load(samples_path, system_id=run.system.id)
    log_w = samples.log_w
    metrics: dict[str, Any] = {
        "system": run.system.id,
        "n_samples": len(samples),
        "ess": effective_sample_size(log_w),
        "ess_clipped": effective_sample_size_clipped(log_w, run.config.clip_fraction),
        "clip_fraction": run.config.clip_fraction,
        "n_nonfinite": int((~torch.isfinite(log_w)).sum()),
        "mean_u_model": float(samples.u[torch.isfinite(samples.u)].mean()),
    }
    data_path = run.path / DATA_NAME
    data = np.load(data_path) if data_path.exists() else None
    cnf = is_cnf(run.config)
    if data is not None:
        test = torch.from_numpy(data["test"])
        if cnf and len(test) > run.config.n_nll_cnf:  # one exact-divergence ODE solve each
            test = test[torch.linspace(0, len(test) - 1, run.config.n_nll_cnf).long()]
            metrics["n_nll"] = len(test)
        test = test.to(_device(run.config), _dtype(run.config))
        metrics["nll"] = negative_log_likelihood(
            run.flow, test, batch_size=_draw_batch(run.config)
        )
    if cnf:
        metrics["mean_path_length"] = cnf_pipeline.mean_path_length(
            run.flow, seed=run.config.seed
        )
    figures = []
    if isinstance(run.system, systems.MolecularSystem):
        from .analysis.molecular import evaluate_molecule

        reference = None
        if data is not None:
            reference = torch.from_numpy(np.concatenate([data["train"], data["test"]]))
        if cnf:  # E(3)-equivariant: D-forms are mirror images of L-forms with the same u, log q
            from .analysis.validity import fix_chirality_by_mirroring

            fix = fix_chirality_by_mirroring(samples.x, run.system)
            samples = Samples(fix.x, samples.log_q, samples.u, samples.log_w)
            metrics["n_mirrored"] = fix.n_fixed
        result = evaluate_molecule(
            run.system, samples.x, samples.u, log_w, reference,
            out_dir=run.path if plots else None, seed=run.config.seed,
        )
        log_w = result.log_w
        metrics.update(result.metrics)
        metrics["ess_clipped"] = effective_sample_size_clipped(log_w, run.config.clip_fraction)
        figures = result.figures
        samples = Samples(samples.x, samples.log_q, samples.u, log_w)
    if run.system.in_region_b is not None:
        in_b = run.system.in_region_b(samples.x)
        for name, lw in (("dF_reweighted", log_w), ("dF_model", torch.zeros_like(log_w))):
            try:
                df = free_energy_difference(lw, ~in_b, in_b)
                metrics[name], metrics[name + "_stderr"] = df.value, df.stderr
            except ValueError:
                metrics[name] = None
        if run.system.bounds is not None and len(run.system.bounds) == 2:
            metrics["dF_exact"] = free_energy_difference_quadrature(
                run.system.energy, run.system.bounds,
                lambda g: ~run.system.in_region_b(g), run.system.in_region_b,
            )
    write_text_atomic(run.path / METRICS_NAME, json.dumps(metrics, indent=2) + "\n")
    if plots:
        from .analysis.report import write_report

        write_report(run, samples, metrics, extra_figures=figures)
    return metrics
