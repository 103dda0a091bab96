"""The run directory and its workflow, the same for every model kind: train → sample → evaluate.

A run directory holds::

    config.yaml      the resolved configuration (version 2: sections, see boltzflow.config)
    data.npz         the reference samples used (train / test split), single-system kinds
    checkpoint.pt    latest checkpoint (atomic, resumable; tensors and plain data only)
    train_log.csv    loss, parts, learning rate and gradient norm over steps
    samples.npz      model samples with x, log_q, u, log_w
    metrics.json     ESS (fraction and count), NLL, ΔF, … with the system id
    report.md        a readable summary with the figures (*.png)

A transferable model samples other systems into ``systems/<id>/`` and evaluates a dataset
split into ``eval-<split>/`` (one such directory per molecule, plus a table).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import systems
from .analysis.evaluate import evaluate_samples
from .config import RunConfig, read_config_file
from .errors import BoltzflowError, ConfigError
from .io import prepare_out_dir, write_atomic, write_text_atomic
from .models import ModelKind, TrainingSet, get_kind, parse_config
from .models.tbg import upgrade_tbg_config
from .sampling import Samples, draw
from .sampling.refine import RefineOptions
from .sampling.refine import refine as refine_samples
from .systems.base import System
from .training import distributed, fit, load_checkpoint
from .training.fit import CHECKPOINT_NAME
from .transforms.splines import compiled_splines

__all__ = ["Run", "evaluate", "load_run", "resolve_system", "sample", "train"]

CONFIG_NAME = "config.yaml"
DATA_NAME = "data.npz"
SAMPLES_NAME = "samples.npz"
#: What a refinement (AIS/SMC) did, beside its samples.
REFINE_NAME = "refine.json"
METRICS_NAME = "metrics.json"
#: MD references shipped with a pretrained model (``boltzflow.pretrained.REFERENCES``).
SHIPPED_REFERENCES = "references"
#: The run file of version-1 transferable runs (read, never written).
TBG_V1_CONFIG = "tbg_config.json"

Echo = Callable[[str], None]


@dataclass
class Run:
    """A trained run: its directory, configuration, model and (single-system kinds) system."""

    path: Path
    config: RunConfig
    model: ModelKind
    system: System | None

    def dir_for(self, system: System) -> Path:
        """Where samples, metrics and the report of ``system`` go."""
        if self.system is not None and system.id == self.system.id:
            return self.path
        return self.path / "systems" / slug(system.id)


def slug(system_id: str) -> str:
    """A file-name form of a system id (``dipeptide:NY`` → ``dipeptide-NY``)."""
    return Path(system_id).stem.replace(":", "-")


def resolve_system(config: RunConfig) -> System:
    """The config's system: a registry id or a PDB file with its force field and solvent."""
    s = config.system
    return systems.resolve(s.id, forcefield=s.forcefield or None, solvent=s.solvent or None,
                           temperature=s.temperature or None)


def dtype_of(config: RunConfig) -> torch.dtype:
    """The configured torch dtype."""
    return {"float32": torch.float32, "float64": torch.float64}[config.train.dtype]


def training_set(config: RunConfig, out: Path, previous: dict[str, Any] | None) -> TrainingSet:
    """What the config's kind trains on: a dataset, or a system with its reference split."""
    kind = get_kind(config.model)
    if kind.transferable:
        if not config.system.dataset:
            raise BoltzflowError(
                f"model {kind.name!r} trains on a multi-molecule dataset: pass --dataset DIR "
                "(build one with `boltzflow dataset dipeptides --out DIR`)"
            )
        return TrainingSet(dataset=Path(config.system.dataset), previous=previous)
    system = resolve_system(config)
    data = None
    if kind.needs_data(config):
        w = distributed.world()
        if w.is_main:
            data = reference_data(system, config, out / DATA_NAME)
        distributed.barrier()
        if not w.is_main:
            data = reference_data(system, config, out / DATA_NAME)  # reads rank 0's file
        data = data["train"]
    return TrainingSet(system=system, data=data, previous=previous)


def dataset_frames(system: System, config: RunConfig) -> Tensor:
    """Frames of an MD dataset, checked against the system, centred and aligned (float32)."""
    from .data import Dataset
    from .geometry import align
    from .systems.molecule import MolecularSystem

    dataset = Dataset.load(config.system.data)
    if dataset.system_id != system.id:
        raise BoltzflowError(
            f"dataset {config.system.data} is for system {dataset.system_id!r}, not "
            f"{system.id!r}; simulate it with `boltzflow simulate {system.id}`"
        )
    x = dataset.positions.to(torch.float64)
    if isinstance(system, MolecularSystem) and system.positions is not None:
        x = align(x, system.positions.to(torch.float64))
    return x.to(torch.float32)


def reference_data(system: System, config: RunConfig, path: Path) -> dict[str, Tensor]:
    """Train/test reference samples, cached in ``path`` so a resumed run reuses them.

    Toys draw fresh reference samples; molecules read an MD dataset (``system.data``), whose
    last frames (in time) are held out as the test set, since neighbouring frames correlate.
    """
    if path.exists():
        data = np.load(path)
        if str(data["system_id"]) == system.id:
            return {"train": torch.from_numpy(data["train"]), "test": torch.from_numpy(data["test"])}
    s = config.system
    if s.data:
        x = dataset_frames(system, config)
        n_test = min(s.n_test, len(x) // 5)
        train, test = x[: len(x) - n_test], x[len(x) - n_test :]
        if len(train) > s.n_data:  # thin evenly in time
            train = train[torch.linspace(0, len(train) - 1, s.n_data).long()]
        split = {"train": train, "test": test}
    elif system.reference_sampler is not None:
        x = system.sample_reference(s.n_data + s.n_test, seed=config.train.seed)
        split = {"train": x[: s.n_data], "test": x[s.n_data :]}
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


def train(config: RunConfig, out: str | Path, *, progress: bool = True) -> Run:
    """Train ``config``'s model into the run directory ``out``; resumes the same run there.

    Raises:
        BoltzflowError: ``out`` holds a run with another configuration, or is not writable.
    """
    out = Path(out)
    w = distributed.init(config.train.device)
    kind = get_kind(config.model)
    kind.check_config(config)  # now that the number of ranks is known
    if w.is_main:
        prepare_out_dir(out)
        write_config(config, out)
    distributed.barrier()
    previous = None
    if (out / CHECKPOINT_NAME).exists():
        previous = load_checkpoint(out / CHECKPOINT_NAME).get("metadata", {})
    source = training_set(config, out, previous)
    torch.manual_seed(config.train.seed)
    model = kind.build(config, source)
    model.to(distributed.device(config.train.device), dtype_of(config))
    t = config.train
    with compiled_splines(t.compile):
        fit(
            model.module, lambda step: model.loss(model.batch(step), step), steps=t.steps,
            lr=t.lr, weight_decay=t.weight_decay, schedule=t.lr_schedule, warmup=t.warmup,
            clip_grad=t.clip_grad, out_dir=out,
            checkpoint_every=t.checkpoint_every, progress=progress,
            metadata=checkpoint_metadata(model),
        )
    distributed.barrier()
    return Run(out, config, model, source.system)


def checkpoint_metadata(model: ModelKind) -> dict[str, Any]:
    """What a checkpoint says about its model: kind, system and the kind's own metadata."""
    system = model.system.id if model.system is not None else ""
    return {"kind": model.name, "system": system, **model.metadata()}


def write_config(config: RunConfig, out: Path) -> None:
    """Write the resolved config; refuse to mix it into a started run with another config
    (keys the kind calls resumable, ``train.steps``, the device and ``sample`` may change)."""
    path = out / CONFIG_NAME
    written = path.exists() or (out / TBG_V1_CONFIG).exists()
    if written and (out / CHECKPOINT_NAME).exists():
        before = _flatten(read_run_config(out).to_dict())
        free = {"train.steps", "train.device", "train.checkpoint_every", "train.compile",
                *get_kind(config.model).resumable}
        differing = sorted(
            k for k, v in _flatten(config.to_dict()).items()
            if before.get(k) != v and k not in free and not k.startswith("sample.")
        )
        if differing:
            raise BoltzflowError(
                f"{out} already holds a run with a different configuration "
                f"(keys: {', '.join(differing)}); use another --out or delete it"
            )
    import yaml

    write_text_atomic(path, yaml.safe_dump(config.to_dict(), sort_keys=False))


def _flatten(data: dict[str, Any]) -> dict[str, Any]:
    """``{"section.key": value}`` of a nested config mapping."""
    flat = {}
    for name, value in data.items():
        if isinstance(value, dict):
            flat.update({f"{name}.{k}": v for k, v in value.items()})
        else:
            flat[name] = value
    return flat


def read_run_config(path: Path) -> RunConfig:
    """The config of the run in ``path``, from any version of boltzflow that wrote it.

    Version-1 files (flat ``config.yaml``, or a transferable run's ``tbg_config.json``) are
    upgraded; a file that cannot be read says which version wrote it.
    """
    import warnings

    if (path / CONFIG_NAME).exists():
        data = read_config_file(path / CONFIG_NAME)
        version = data.get("version", 1) if isinstance(data, dict) else "?"
    elif (path / TBG_V1_CONFIG).exists():
        record = json.loads((path / TBG_V1_CONFIG).read_text())
        data, version = upgrade_tbg_config(record["config"], record["dataset"]), 1
    else:
        raise BoltzflowError(f"{path} is not a run directory (no {CONFIG_NAME}); train first")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # an old run is not a mistake
            return parse_config(data, source=str(path / CONFIG_NAME))
    except ConfigError as exc:
        raise BoltzflowError(
            f"the run in {path} was written by boltzflow config version {version} and cannot "
            f"be read by this one ({exc}); retrain it"
        ) from exc


def load_run(path: str | Path, *, changes: dict[str, Any] | None = None) -> Run:
    """Load a trained run directory (config + latest checkpoint).

    Args:
        path: the run directory.
        changes: ``{"section.key": value}`` applied to the stored config (e.g. a sampling
            integrator, ``train.device``); ``None`` values are ignored.
    """
    from .models import override_config

    path = Path(path)
    config = read_run_config(path)
    if changes:
        config = override_config(config, changes)
    kind = get_kind(config.model)
    system = None if kind.transferable else resolve_system(config)
    state = load_checkpoint(path / CHECKPOINT_NAME)
    meta = state.get("metadata", {})
    expected = "" if system is None else system.id
    if meta.get("kind") not in (kind.name, *LEGACY_KINDS.get(kind.name, ())) or (
            meta.get("system", "") or "") != expected:
        raise BoltzflowError(
            f"checkpoint in {path} is a {meta.get('kind')!r} model of {meta.get('system')!r}, "
            f"not the {kind.name!r} model of {expected or 'a dataset'!r} its config describes"
        )
    model = kind.restore(config, meta, system)
    try:
        model.module.load_state_dict(state["model"])
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise BoltzflowError(f"checkpoint in {path} does not match its config: {first}") from exc
    model.to(distributed.device(config.train.device), dtype_of(config))
    model.module.eval()
    model.info["step"] = int(state.get("step", 0))
    return Run(path, config, model, system)


#: Checkpoint ``kind`` values written by version 1 for each kind.
LEGACY_KINDS = {"coupling": ("coupling-flow",), "internal": ("coupling-flow",)}


def sample(
    run: Run, n: int, *, system: System | None = None, seed: int | None = None,
    progress: bool = True, refine: RefineOptions | None = None,
) -> Samples:
    """Draw ``n`` samples of ``system`` (default: the run's), score and weight them, and save
    ``samples.npz`` in :meth:`Run.dir_for` (all ranks' samples, gathered).

    With ``refine``, the flow's samples are moved toward the target by AIS or SMC
    (:func:`boltzflow.sampling.refine.refine`) and their weights are the annealing's; what the
    refinement did goes to ``refine.json`` beside the samples (and into ``metrics.json`` on
    :func:`evaluate`). Under ``torchrun`` each rank refines its own share (SMC resamples
    within a rank).
    """
    system = _target(run, system)
    if refine is not None and run.model.refine_unsupported:
        raise BoltzflowError(f"--refine is not available for a {run.model.name!r} model: "
                             f"{run.model.refine_unsupported}")
    w = distributed.init(run.config.train.device)
    base_seed = run.config.train.seed + 1 if seed is None else seed
    torch.manual_seed(distributed.step_seed(base_seed, -1, w.rank) if w.distributed else base_seed)
    flow = run.model.flow_for(system)
    n_local = -(-n // w.size)  # equal shards for all_gather; trimmed to n below
    t0, info = time.perf_counter(), None
    if refine is None:
        with progress_bar(progress and w.is_main, n, f"sample {system.id}") as update:
            samples = draw(flow, run.model.energy_of(system), n_local,
                           batch_size=run.config.sample.batch_size, progress=update)
    else:
        result = refine_samples(flow, run.model.energy_of(system), n_local, replace(
            refine, seed=distributed.step_seed(base_seed, -2, w.rank) % 2**31),
            progress=level_bar(progress and w.is_main, refine.levels))
        samples, info = result.samples, result.info
    if w.distributed:
        samples = Samples(*(distributed.gather_cat(t)[:n]
                            for t in (samples.x, samples.log_q, samples.u, samples.log_w)))
    out = run.dir_for(system)
    if w.is_main:
        prepare_out_dir(out)
        samples.save(out / SAMPLES_NAME, system_id=system.id)
        write_text_atomic(out / "sample_time.txt", f"{time.perf_counter() - t0:.3f}\n")
        (out / REFINE_NAME).unlink(missing_ok=True)
        if info is not None:
            info["seconds"] = time.perf_counter() - t0
            write_text_atomic(out / REFINE_NAME, json.dumps(info, indent=2) + "\n")
    distributed.barrier()
    return samples


def level_bar(enabled: bool, levels: int) -> Callable[[str, int, int], None] | None:
    """A progress callback for the refinement: one tqdm bar per stage (tuning, main run)."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    bars: dict[str, Any] = {}

    def update(stage: str, level: int, total: int) -> None:
        if stage not in bars:
            for bar in bars.values():
                bar.close()
            bars[stage] = tqdm(total=total, desc=f"{stage} levels", dynamic_ncols=True,
                               disable=None)
        bars[stage].update(level - bars[stage].n)
        if level == total:
            bars[stage].close()

    return update


def _target(run: Run, system: System | None) -> System:
    """The system to sample: given, or the run's own (a transferable run needs one given)."""
    if system is None and run.system is None:
        raise BoltzflowError(
            f"the {run.model.name!r} model in {run.path} is transferable: name the molecule "
            "with --system (e.g. --system dipeptide:NY)"
        )
    if system is not None and run.system is not None and system.id != run.system.id:
        raise BoltzflowError(
            f"the {run.model.name!r} model in {run.path} was trained on {run.system.id!r}; it "
            f"cannot sample {system.id!r} (only a transferable model can)"
        )
    return system or run.system


class progress_bar:  # noqa: N801 (used like a function)
    """A tqdm bar over ``total`` items as a context manager yielding ``update(n_done)``."""

    def __init__(self, enabled: bool, total: int, desc: str):
        self.enabled, self.total, self.desc, self.bar = enabled, total, desc, None

    def __enter__(self) -> Callable[[int], None] | None:
        if not self.enabled:
            return None
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.total, desc=self.desc, unit="x", dynamic_ncols=True,
                        disable=None)
        return lambda done: self.bar.update(min(done, self.total) - self.bar.n)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


def evaluate(
    run: Run, *, system: System | None = None, reference: Tensor | None = None,
    plots: bool = True, seed: int | None = None,
) -> dict[str, Any]:
    """Metrics (and plots + report) of the samples of ``system`` (default: the run's).

    Samples are drawn first if there are none. The reference is the run's MD (``data.npz``),
    or ``reference`` (MD frames ``[M, N, 3]``); ``metrics.json`` and ``report.md`` go next to
    the samples.
    """
    system = _target(run, system)
    out = run.dir_for(system)
    if not (out / SAMPLES_NAME).exists():
        sample(run, run.config.sample.n_samples, system=system, seed=seed, progress=False)
    samples = Samples.load(out / SAMPLES_NAME, system_id=system.id)
    extra = {}
    if (out / REFINE_NAME).exists():
        extra = {f"refine_{k}": v for k, v in json.loads((out / REFINE_NAME).read_text()).items()}
    held_out = train_frames = None
    data_path = run.path / DATA_NAME
    if system is run.system and data_path.exists():
        data = np.load(data_path)
        held_out, train_frames = torch.from_numpy(data["test"]), torch.from_numpy(data["train"])
        if reference is None:
            reference = torch.cat([train_frames, held_out])
    return evaluate_samples(
        run.model, system, samples, out, reference=reference, held_out=held_out,
        train_frames=train_frames, plots=plots,
        seed=run.config.train.seed if seed is None else seed, extra=extra,
    ).metrics


def reference_frames(run: Run, system: System, reference: str | Path | None) -> Tensor | None:
    """MD frames of ``system``: from ``reference`` (an MD dataset or a dipeptide dataset), else
    from the run's own dataset when it holds that molecule, else (a pretrained model's run, no
    dataset) the small reference shipped with it, else ``None``."""
    from .data import Dataset
    from .data.dipeptides import INDEX_NAME, load_index

    source = reference or run.config.system.dataset or None
    if source is None:  # a pretrained model's run: the small MD shipped with it, if any
        shipped = run.path / SHIPPED_REFERENCES / f"{slug(system.id)}.npz"
        return torch.from_numpy(np.load(shipped)["positions"]) if shipped.exists() else None
    if (Path(source) / INDEX_NAME).exists():
        index = load_index(source)
        sequence = system.id.partition(":")[2]
        if sequence not in index.sequences(None):
            if reference is None:
                return None
            raise BoltzflowError(f"--reference {reference} holds no MD of {system.id!r}")
        return index.dataset(sequence).positions
    data = Dataset.load(source)
    if data.system_id != system.id:
        raise BoltzflowError(f"--reference {source} holds MD of {data.system_id!r}, not "
                             f"{system.id!r}")
    return data.positions


def evaluate_split(
    run: Run, split: str, *, n_samples: int | None = None, seed: int = 0, plots: bool = True,
    echo: Echo | None = None, progress: bool = False, max_reference: int = 20000,
    out: Path | None = None,
) -> Any:
    """Evaluate a transferable run on every molecule of a ``split`` of its dataset, each with
    :func:`evaluate` (one directory per molecule in ``RUN/eval-<split>/``), and write the
    per-molecule table, means and Ramachandran grid (:mod:`boltzflow.analysis.split`)."""
    from .analysis.split import split_table

    if run.system is not None:
        raise BoltzflowError(
            f"--split evaluates a transferable model over a dataset split; the {run.model.name!r} "
            f"model in {run.path} has one system: evaluate it without --split"
        )
    from .data.dipeptides import load_index

    if split not in ("test", "train", "all"):
        raise BoltzflowError(f"--split must be test, train or all, got {split!r}")
    index = load_index(run.config.system.dataset)
    chosen = index.sequences(None if split == "all" else split)
    if not chosen:
        raise BoltzflowError(f"the {split} split of {run.config.system.dataset} holds no molecules")
    n = n_samples or run.config.sample.n_samples
    out = Path(out) if out is not None else run.path / f"eval-{split}"
    rows, results = {}, {}
    for k, seq in enumerate(chosen):
        t0 = time.perf_counter()
        reference = index.dataset(seq).positions
        if len(reference) > max_reference:
            reference = reference[torch.linspace(0, len(reference) - 1, max_reference).long()]
        result = evaluate_molecule_dir(run, index.entry(seq).system_id, out / seq, n, reference,
                                       seed=seed + k, plots=plots, progress=progress)
        result.metrics["seen_in_training"] = seq in set(run.model.info.get("train_sequences", []))
        result.metrics["n_reference"] = len(reference)
        rows[seq], results[seq] = result.metrics, result
        if echo is not None:
            echo(f"[{k + 1}/{len(chosen)}] {seq}: " + result.summary()
                 + f" ({time.perf_counter() - t0:.0f} s)")
    return split_table(run.model, run.config.system.dataset, split, rows, results, out, n,
                       plots=plots)


def evaluate_molecule_dir(
    run: Run, system_id: str, out: Path, n: int, reference: Tensor, *, seed: int, plots: bool,
    progress: bool,
) -> Any:
    """Sample (unless ``out`` already holds ``n`` samples of it) and evaluate one molecule."""
    system = systems.get(system_id)
    cached = cached_samples(out, n, system_id, run.model.describe())
    timing = {}
    if cached is None:
        torch.manual_seed(seed)
        t0 = time.perf_counter()
        with progress_bar(progress, n, f"sample {system_id}") as update:
            cached = draw(run.model.flow_for(system), run.model.energy_of(system), n,
                          batch_size=run.config.sample.batch_size, progress=update)
        seconds = time.perf_counter() - t0
        timing = {"sample_seconds": seconds, "sample_seconds_per_sample": seconds / n}
        timing["sampler"] = run.model.describe()
        prepare_out_dir(out)
        cached.save(out / SAMPLES_NAME, system_id=system_id)
    else:
        previous = json.loads((out / METRICS_NAME).read_text())
        timing = {k: previous[k] for k in ("sample_seconds", "sample_seconds_per_sample",
                                           "sampler") if k in previous}
    return evaluate_samples(run.model, system, cached, out, reference=reference, plots=plots,
                            seed=seed, extra=timing)


def cached_samples(out: Path, n: int, system_id: str, sampler: str) -> Samples | None:
    """Samples of an earlier evaluation in ``out`` with ``n`` samples drawn by the same model
    and integrator (``sampler``: the model's description; evaluations written before it was
    recorded count as the same), if complete."""
    metrics = out / METRICS_NAME
    if not (metrics.exists() and (out / SAMPLES_NAME).exists()):
        return None
    try:
        previous = json.loads(metrics.read_text())
        if previous.get("n_samples") != n or previous.get("sampler", sampler) != sampler:
            return None
        return Samples.load(out / SAMPLES_NAME, system_id=system_id)
    except (BoltzflowError, ValueError):
        return None
