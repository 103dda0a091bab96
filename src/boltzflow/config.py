"""Typed, validated run configuration, read from TOML or YAML.

A typo, a wrong type or an out-of-range value raises :class:`~boltzflow.errors.ConfigError`
whose one-line message names the key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import tomllib

from .errors import ConfigError

MODELS = ("spline", "affine")
SCHEDULES = ("cosine", "constant")
DEVICES = ("cpu", "cuda")
DTYPES = ("float32", "float64")


def _check(cond: bool, key: str, allowed: str, value: Any) -> None:
    if not cond:
        raise ConfigError(f"config key {key!r} must be {allowed}, got {value!r}")


@dataclass
class TrainConfig:
    """Everything that defines a training run; written resolved into the run directory.

    Attributes:
        system: system id (see ``boltzflow systems``) or a PDB file path.
        forcefield: force field for a PDB system (``amber14`` or ``amber99sb-ildn``); empty for
            named systems, which pin their own.
        solvent: solvent model for a PDB system (``vacuum``, ``obc1``, ``obc2``); empty otherwise.
        temperature: temperature (K) for a PDB system; 0 for named systems.
        data: reference dataset directory (from ``boltzflow simulate``) for molecules; toys
            draw their own reference samples.
        model: coupling layer type, ``spline`` (rational-quadratic) or ``affine`` (RealNVP).
        n_layers: number of coupling layers.
        hidden: hidden layer widths of each conditioner MLP.
        n_bins: spline bins.
        bound: spline interval ``[-bound, bound]`` in the normalized latent space.
        steps: optimizer steps.
        batch_size: data samples per step for the likelihood term.
        kl_batch_size: model samples per step for the reverse-KL term.
        lr: Adam learning rate.
        lr_schedule: ``cosine`` or ``constant``.
        warmup: linear warm-up steps.
        clip_grad: gradient-norm clipping threshold.
        w_nll: weight of maximum likelihood on reference data.
        w_kl: weight of the reverse KL on the energy.
        kl_start: first step of the reverse-KL term; before it, likelihood only (the usual
            recipe: fit the data first, then refine on the energy).
        u_high: energies above this (kT) are softened logarithmically in the KL term.
        n_data: reference samples used for training (and to fit the normalization).
        n_test: held-out reference samples for the NLL.
        n_samples: model samples drawn by ``sample``/``evaluate``.
        clip_fraction: fraction of largest weights clipped for the clipped ESS.
        seed: seed of data, initialization and training.
        checkpoint_every: steps between checkpoints.
        device: ``cpu`` or ``cuda``.
        dtype: ``float32`` or ``float64``.
    """

    system: str = "double-well"
    forcefield: str = ""
    solvent: str = ""
    temperature: float = 0.0
    data: str = ""
    model: str = "spline"
    n_layers: int = 6
    hidden: list[int] = field(default_factory=lambda: [64, 64])
    n_bins: int = 8
    bound: float = 5.0
    steps: int = 2000
    batch_size: int = 256
    kl_batch_size: int = 256
    lr: float = 1e-3
    lr_schedule: str = "cosine"
    warmup: int = 0
    clip_grad: float = 100.0
    w_nll: float = 1.0
    w_kl: float = 1.0
    kl_start: int = 0
    u_high: float = 1000.0
    n_data: int = 20000
    n_test: int = 10000
    n_samples: int = 10000
    clip_fraction: float = 0.002
    seed: int = 0
    checkpoint_every: int = 500
    device: str = "cpu"
    dtype: str = "float32"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check types and ranges; raises :class:`ConfigError` naming the key."""
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "int":
                _check(type(value) is int, f.name, "an integer", value)
            elif f.type == "float":
                _check(
                    isinstance(value, (int, float)) and not isinstance(value, bool),
                    f.name, "a number", value,
                )
                setattr(self, f.name, float(value))
            elif f.type == "str":
                _check(isinstance(value, str), f.name, "a string", value)
        _check(
            isinstance(self.hidden, (list, tuple))
            and len(self.hidden) > 0
            and all(type(h) is int and h > 0 for h in self.hidden),
            "hidden", "a non-empty list of positive integers", self.hidden,
        )
        self.hidden = list(self.hidden)
        _check(self.model in MODELS, "model", f"one of {', '.join(MODELS)}", self.model)
        _check(
            self.lr_schedule in SCHEDULES, "lr_schedule", f"one of {', '.join(SCHEDULES)}",
            self.lr_schedule,
        )
        _check(self.device in DEVICES, "device", f"one of {', '.join(DEVICES)}", self.device)
        _check(self.dtype in DTYPES, "dtype", f"one of {', '.join(DTYPES)}", self.dtype)
        for key in ("n_layers", "n_bins", "batch_size", "kl_batch_size", "n_samples",
                    "checkpoint_every", "n_test", "n_data"):
            _check(getattr(self, key) > 0, key, "a positive integer", getattr(self, key))
        for key in ("steps", "warmup", "seed", "kl_start"):
            _check(getattr(self, key) >= 0, key, "an integer >= 0", getattr(self, key))
        _check(self.temperature >= 0, "temperature", "a positive number (kelvin)", self.temperature)
        for key in ("lr", "bound", "clip_grad", "u_high"):
            _check(getattr(self, key) > 0, key, "a positive number", getattr(self, key))
        for key in ("w_nll", "w_kl"):
            _check(getattr(self, key) >= 0, key, "a number >= 0", getattr(self, key))
        _check(self.w_nll > 0 or self.w_kl > 0, "w_nll", "> 0 when w_kl is 0", self.w_nll)
        _check(
            self.kl_start == 0 or self.w_nll > 0, "kl_start", "0 when w_nll is 0", self.kl_start
        )
        _check(
            0 <= self.clip_fraction < 1, "clip_fraction", "a number in [0, 1)", self.clip_fraction
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> TrainConfig:
        """Build from a mapping; unknown keys raise with a did-you-mean suggestion."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source} must be a mapping of keys to values")
        known = [f.name for f in fields(cls)]
        for key in data:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise ConfigError(
                    f"unknown config key {key!r} in {source}; {hint}allowed keys: "
                    f"{', '.join(known)}"
                )
        return cls(**data)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied (``None`` values are ignored), validated."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a ``.toml``, ``.yaml`` or ``.yml`` file into a dict, with one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text()
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            data = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            raise ConfigError(f"config file {path} must end in .toml, .yaml or .yml")
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"cannot parse {path}: {exc}".splitlines()[0]) from exc
    except Exception as exc:  # yaml.YAMLError without importing yaml at module level
        raise ConfigError(f"cannot parse {path}: {str(exc).splitlines()[0]}") from exc
    return data


def load_config(path: str | Path) -> TrainConfig:
    """Read and validate a config file."""
    return TrainConfig.from_dict(read_config_file(path), source=str(path))
