"""One configuration schema for every model kind, read from TOML or YAML.

A run's configuration has shared sections and one section for its model kind::

    model: internal            # coupling | internal | cnf | tbg (``boltzflow.models.KINDS``)
    system: {id: aldp-implicit, data: data/aldp}
    train: {steps: 3000, lr: 1e-3, batch_size: 256}
    sample: {n_samples: 20000}
    internal: {n_layers: 6, hidden: [64, 64], w_kl: 1.0, kl_start: 1500}

The same idea has the same name in every section (``hidden``, ``n_layers``, ``solver``,
``solver_steps``, ``amp``, ``pairing``, ``batch_size``). A kind may give shared keys its own
defaults (:attr:`~boltzflow.models.ModelKind.train_defaults`); keys given in the file win.

A typo, a wrong type or an out-of-range value raises :class:`~boltzflow.errors.ConfigError`
whose one-line message names the key and what is allowed. Files and run directories of the
first (flat) format are read through :func:`upgrade_flat` with a deprecation warning.
"""

from __future__ import annotations

import dataclasses
import difflib
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import tomllib

from .errors import ConfigError

#: Written as ``version`` into every ``config.yaml``; version 1 was the flat format.
CONFIG_VERSION = 2

SCHEDULES = ("cosine", "constant")
DEVICES = ("cpu", "cuda")
DTYPES = ("float32", "float64")
AMPS = ("bf16", "none")


def check_known_keys(known: list[str], data: Any, source: str) -> None:
    """Raise :class:`ConfigError` unless ``data`` is a mapping whose keys are in ``known``.

    An unknown key is named with a did-you-mean suggestion and the allowed keys.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must be a mapping of keys to values, got {data!r}")
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(
                f"unknown key {key!r} in {source}; {hint}allowed keys: {', '.join(known)}"
            )


def check(cond: bool, key: str, allowed: str, value: Any) -> None:
    """Raise :class:`ConfigError` ``config key KEY must be ALLOWED, got VALUE`` unless ``cond``."""
    if not cond:
        raise ConfigError(f"config key {key!r} must be {allowed}, got {value!r}")


def check_choice(value: str, key: str, allowed: tuple[str, ...]) -> None:
    """``value`` must be one of ``allowed``."""
    check(value in allowed, key, f"one of {', '.join(allowed)}", value)


class Section:
    """Base of the config sections: type checks from the annotations, mapping round trip.

    Subclasses are dataclasses; ``NAME`` is the section's key in the file and in messages.
    """

    NAME = "section"

    def __post_init__(self) -> None:
        for f in fields(self):
            setattr(self, f.name, _typed(getattr(self, f.name), f.type, f"{self.NAME}.{f.name}"))
        self.validate()

    def validate(self) -> None:
        """Range checks beyond the types (none by default)."""

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> Section:
        """Build from a mapping; unknown keys raise with a did-you-mean suggestion."""
        check_known_keys([f.name for f in fields(cls)], data, f"section {cls.NAME!r} of {source}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """Plain ``{key: value}``."""
        return dataclasses.asdict(self)

    def positive(self, *keys: str) -> None:
        """Each of ``keys`` must be > 0."""
        for key in keys:
            check(getattr(self, key) > 0, f"{self.NAME}.{key}", "> 0", getattr(self, key))

    def non_negative(self, *keys: str) -> None:
        """Each of ``keys`` must be >= 0."""
        for key in keys:
            check(getattr(self, key) >= 0, f"{self.NAME}.{key}", ">= 0", getattr(self, key))


def _typed(value: Any, annotation: str, key: str) -> Any:
    """``value`` checked (and ints widened to float) against a field's annotation string."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation == "int":
        check(type(value) is int, key, "an integer", value)
    elif annotation == "float":
        check(number, key, "a number", value)
        return float(value)
    elif annotation == "bool":
        check(isinstance(value, bool), key, "true or false", value)
    elif annotation == "str":
        check(isinstance(value, str), key, "a string", value)
    elif annotation == "list[int]":
        check(
            isinstance(value, (list, tuple)) and len(value) > 0
            and all(type(h) is int and h > 0 for h in value),
            key, "a non-empty list of positive integers", value,
        )
        return list(value)
    return value


@dataclass
class SystemSection(Section):
    """What the model learns and from which reference data.

    Attributes:
        id: system id (``boltzflow systems``) or a PDB file; empty for a transferable model
            trained on a ``dataset``.
        forcefield: force field of a PDB system (``amber14`` or ``amber99sb-ildn``).
        solvent: solvent model of a PDB system (``vacuum``, ``obc1``, ``obc2``).
        temperature: temperature (K) of a PDB system; 0 for named systems.
        data: MD dataset directory (``boltzflow simulate``) of one molecule; toys draw their
            own reference samples.
        dataset: multi-molecule dataset (``boltzflow dataset dipeptides``) of a transferable
            model.
        n_data: reference samples used for training (evenly thinned in time).
        n_test: held-out reference samples (the last frames in time) for the NLL.
        max_frames: transferable models: at most this many frames per molecule (0: all).
    """

    NAME = "system"
    id: str = "double-well"
    forcefield: str = ""
    solvent: str = ""
    temperature: float = 0.0
    data: str = ""
    dataset: str = ""
    n_data: int = 20000
    n_test: int = 10000
    max_frames: int = 0

    def validate(self) -> None:
        """Positive sample counts, a non-negative temperature."""
        self.positive("n_data", "n_test")
        self.non_negative("temperature", "max_frames")


@dataclass
class TrainSection(Section):
    """The optimizer loop, shared by every kind.

    Attributes:
        steps: optimizer steps.
        batch_size: reference frames per step (all ranks together).
        lr: Adam learning rate.
        weight_decay: L2 penalty of Adam on every parameter (``0``: none).
        lr_schedule: ``cosine`` or ``constant``.
        warmup: linear warm-up steps.
        clip_grad: gradient-norm clipping threshold.
        seed: seed of data, initialization and training.
        checkpoint_every: steps between checkpoints.
        device: ``cpu`` or ``cuda``.
        dtype: ``float32`` or ``float64``.
        compile: evaluate the coupling layers' splines with ``torch.compile``'d kernels while
            training (:func:`~boltzflow.transforms.splines.compiled_splines`: about 1.6 times
            as fast per step on a CPU after a compile of up to about 90 s; falls back to eager
            with a warning where compiling fails). The same model up to float rounding (log q
            within ~1e-4 nats for the same parameters).
    """

    NAME = "train"
    steps: int = 2000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    lr_schedule: str = "cosine"
    warmup: int = 0
    clip_grad: float = 100.0
    seed: int = 0
    checkpoint_every: int = 500
    device: str = "cpu"
    dtype: str = "float32"
    compile: bool = False

    def validate(self) -> None:
        """Ranges and choices."""
        check(isinstance(self.compile, bool), "train.compile", "true or false", self.compile)
        self.positive("batch_size", "lr", "clip_grad", "checkpoint_every")
        self.non_negative("steps", "warmup", "seed", "weight_decay")
        check_choice(self.lr_schedule, "train.lr_schedule", SCHEDULES)
        check_choice(self.device, "train.device", DEVICES)
        check_choice(self.dtype, "train.dtype", DTYPES)


@dataclass
class SampleSection(Section):
    """Sampling and evaluation.

    Attributes:
        n_samples: model samples drawn by ``sample``/``evaluate``.
        batch_size: samples per chunk; 0 takes the kind's default (a CNF's exact divergence
            keeps one graph per chunk in memory, so it samples in small chunks).
        clip_fraction: fraction of largest weights clipped for the clipped ESS.
        n_nll: at most this many held-out samples (evenly spaced) in the NLL; 0: all.
    """

    NAME = "sample"
    n_samples: int = 10000
    batch_size: int = 0
    clip_fraction: float = 0.002
    n_nll: int = 0

    def validate(self) -> None:
        """Ranges."""
        self.positive("n_samples")
        self.non_negative("batch_size", "n_nll")
        check(0 <= self.clip_fraction < 1, "sample.clip_fraction", "in [0, 1)", self.clip_fraction)


SHARED = {s.NAME: s for s in (SystemSection, TrainSection, SampleSection)}


@dataclass
class RunConfig:
    """Everything that defines a run; written resolved into its ``config.yaml``.

    Attributes:
        model: the model kind's name (``boltzflow.models.KINDS``).
        system: :class:`SystemSection`.
        train: :class:`TrainSection`.
        sample: :class:`SampleSection`.
        params: the kind's own section (its :attr:`~boltzflow.models.ModelKind.Params`),
            written under the kind's name.
    """

    model: str
    system: SystemSection
    train: TrainSection
    sample: SampleSection
    params: Section

    def to_dict(self) -> dict[str, Any]:
        """The nested mapping written to ``config.yaml``."""
        return {
            "version": CONFIG_VERSION,
            "model": self.model,
            **{name: getattr(self, name).to_dict() for name in SHARED},
            self.model: self.params.to_dict(),
        }


def switch_kind(data: dict[str, Any], model: str) -> dict[str, Any]:
    """``data`` for another model kind: its section dropped, shared sections kept."""
    kept = {k: v for k, v in data.items() if k in SHARED or k == "version"}
    return {**kept, "model": model}


def default_kind(system_id: str) -> str:
    """The model kind a system gets without ``model``: ``internal`` for molecules, else
    ``coupling`` (molecules: a PDB file or an id that names a molecule)."""
    if system_id.endswith(".pdb") or system_id.startswith(("aldp", "dipeptide:")):
        return "internal"
    return "coupling"


def is_flat(data: dict[str, Any]) -> bool:
    """Whether ``data`` is a version-1 (flat) configuration: ``system`` as a string, or a
    version-1 key at the top level."""
    return isinstance(data.get("system"), str) or any(
        key in FLAT_KEYS and key != "system" for key in data
    )


#: Version-1 keys → ``section.key`` of version 2 (the kind's section is ``kind.``).
FLAT_KEYS = {
    "system": "system.id", "forcefield": "system.forcefield", "solvent": "system.solvent",
    "temperature": "system.temperature", "data": "system.data", "n_data": "system.n_data",
    "n_test": "system.n_test", "steps": "train.steps", "batch_size": "train.batch_size",
    "lr": "train.lr", "lr_schedule": "train.lr_schedule", "warmup": "train.warmup",
    "clip_grad": "train.clip_grad", "seed": "train.seed",
    "checkpoint_every": "train.checkpoint_every", "device": "train.device",
    "dtype": "train.dtype", "n_samples": "sample.n_samples",
    "clip_fraction": "sample.clip_fraction", "ode_batch_size": "sample.batch_size",
    "n_nll_cnf": "sample.n_nll", "n_layers": "kind.n_layers", "hidden": "kind.hidden",
    "n_bins": "kind.n_bins", "bound": "kind.bound", "w_nll": "kind.w_nll", "w_kl": "kind.w_kl",
    "kl_batch_size": "kind.kl_batch_size", "kl_start": "kind.kl_start", "u_high": "kind.u_high",
    "cnf_hidden": "kind.hidden", "cnf_layers": "kind.n_layers", "pairing": "kind.pairing",
    "ot_block_size": "kind.ot_block_size", "sigma": "kind.sigma", "solver": "kind.solver",
    "solver_steps": "kind.solver_steps", "divergence": "kind.divergence", "amp": "kind.amp",
}

#: Keys of one kind that version 1 also held for the others (dropped when upgrading).
_OTHER_KIND_KEYS = {
    "cnf": {"n_bins", "bound", "w_nll", "w_kl", "kl_batch_size", "kl_start", "u_high",
            "n_layers", "hidden"},
    "coupling": {"cnf_hidden", "cnf_layers", "pairing", "ot_block_size", "sigma", "solver",
                 "solver_steps", "divergence", "amp", "ode_batch_size", "n_nll_cnf"},
}
_OTHER_KIND_KEYS["internal"] = _OTHER_KIND_KEYS["coupling"]


def upgrade_flat(data: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """A version-1 flat configuration as a version-2 nested one (with a deprecation warning).

    ``model: spline`` / ``affine`` become ``coupling`` (with that ``transform``) for toys and
    ``internal`` for molecules. Unknown flat keys raise the usual one-line error.
    """
    data = dict(data)
    data.pop("version", None)
    check_known_keys(["model", *FLAT_KEYS], data, source)
    old = data.pop("model", "spline")
    system_id = data.get("system", SystemSection.id)
    kind = "cnf" if old == "cnf" else default_kind(system_id)
    if old not in ("spline", "affine", "cnf"):
        kind = old
    out: dict[str, Any] = {"model": kind}
    for key, value in data.items():
        if key in _OTHER_KIND_KEYS.get(kind, ()) or value is None:
            continue
        section, _, name = FLAT_KEYS[key].partition(".")
        out.setdefault(kind if section == "kind" else section, {})[name] = value
    if kind == "coupling" and old in ("spline", "affine"):
        out.setdefault("coupling", {})["transform"] = old
    warnings.warn(
        f"{source} uses the flat (version 1) configuration; boltzflow read it as "
        f"model: {kind} with sections {', '.join(k for k in out if k != 'model')} — "
        "write it in sections (docs/architecture.md)",
        DeprecationWarning, stacklevel=3,
    )
    return out


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a ``.toml``, ``.yaml`` or ``.yml`` file into a dict, with one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text()
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise ConfigError(f"config file {path} must end in .toml, .yaml or .yml")
    try:
        if suffix == ".toml":
            data = tomllib.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text) or {}
    except Exception as exc:  # TOMLDecodeError, yaml.YAMLError (yaml is imported lazily)
        raise ConfigError(f"cannot parse {path}: {str(exc).splitlines()[0]}") from exc
    return data


def config_field(default: Any) -> Any:
    """A dataclass field with a mutable default (a list), copied per instance."""
    return field(default_factory=lambda: list(default))
