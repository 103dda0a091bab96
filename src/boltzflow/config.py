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

MODELS = ("spline", "affine", "cnf")
#: Models trained by flow matching (data only) rather than by likelihood and reverse KL.
CNF_MODELS = ("cnf",)
PAIRINGS = ("auto", "equivariant-ot", "ot", "independent")
SOLVERS = ("rk4", "dopri5", "midpoint", "euler")
DIVERGENCES = ("exact", "hutchinson")
AMPS = ("bf16", "none")
SCHEDULES = ("cosine", "constant")
DEVICES = ("cpu", "cuda")
DTYPES = ("float32", "float64")


def check_known_keys(cls: type, data: Any, source: str, kind: str = "config") -> None:
    """Raise :class:`ConfigError` unless ``data`` is a mapping of ``cls``'s field names.

    An unknown key is named with a did-you-mean suggestion and the allowed keys; ``kind`` is
    how the message calls the configuration (``config``, ``tbg config``).
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must be a mapping of keys to values")
    known = [f.name for f in fields(cls)]
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(
                f"unknown {kind} key {key!r} in {source}; {hint}allowed keys: {', '.join(known)}"
            )


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
        model: ``spline`` (rational-quadratic) or ``affine`` (RealNVP) coupling flow, or ``cnf``:
            a continuous normalizing flow trained by flow matching (EGNN field for particle
            systems and molecules, MLP field for other toys; see ``docs/cnf.md``).
        n_layers: number of coupling layers (coupling flows only).
        hidden: hidden layer widths of each conditioner MLP (coupling flows only).
        n_bins: spline bins (coupling flows only).
        bound: spline interval ``[-bound, bound]`` in the normalized latent space.
        steps: optimizer steps.
        batch_size: data samples per step for the likelihood term.
        kl_batch_size: model samples per step for the reverse-KL term.
        lr: Adam learning rate.
        lr_schedule: ``cosine`` or ``constant``.
        warmup: linear warm-up steps.
        clip_grad: gradient-norm clipping threshold.
        w_nll: weight of maximum likelihood on reference data.
        w_kl: weight of the reverse KL on the energy; default 1 for coupling flows, 0 for
            ``cnf`` (which supports no reverse KL).
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
        cnf_hidden: width of the CNF's vector field (EGNN features / MLP hidden layers).
        cnf_layers: EGNN layers (or MLP hidden layers) of the CNF's vector field.
        pairing: flow-matching pairing of prior and data samples: ``equivariant-ot``
            (permutation among identical atoms + rotation, then minibatch OT), ``ot``
            (minibatch OT), ``independent``, or ``auto`` (equivariant OT for particle systems,
            OT otherwise).
        ot_block_size: equivariant OT assigns within blocks of this many samples (``B · k``
            alignments per step instead of ``B²``); 0: the whole batch.
        sigma: width of the linear conditional path (``σ_min``) in the field's units.
        solver: ODE solver for sampling and likelihoods: ``rk4``, ``midpoint``, ``euler``
            (fixed step) or ``dopri5`` (adaptive, rtol = atol = 1e-5).
        solver_steps: steps of a fixed-step solver.
        divergence: ``exact`` (trace over the mean-free basis) or ``hutchinson`` (one noisy
            probe: fine for a mean NLL, biases importance weights).
        amp: mixed precision of the flow-matching step: ``bf16`` (autocast to bfloat16) or
            ``none``.
        ode_batch_size: configurations per ODE solve when a CNF samples or computes
            likelihoods (the exact divergence keeps one forward graph per solve in memory).
        n_nll_cnf: at most this many held-out samples (evenly spaced) for a CNF's NLL; each
            needs one ODE solve with the exact divergence.
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
    w_kl: float | None = None
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
    cnf_hidden: int = 64
    cnf_layers: int = 4
    pairing: str = "auto"
    ot_block_size: int = 64
    sigma: float = 0.01
    solver: str = "rk4"
    solver_steps: int = 20
    divergence: str = "exact"
    amp: str = "bf16"
    ode_batch_size: int = 128
    n_nll_cnf: int = 1000

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check types and ranges; raises :class:`ConfigError` naming the key."""
        _check(isinstance(self.model, str), "model", "a string", self.model)
        if self.w_kl is None:
            self.w_kl = 0.0 if self.model in CNF_MODELS else 1.0
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "int":
                _check(type(value) is int, f.name, "an integer", value)
            elif f.type in ("float", "float | None"):  # w_kl: None was resolved above
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
        for key, allowed in (("pairing", PAIRINGS), ("solver", SOLVERS),
                             ("divergence", DIVERGENCES), ("amp", AMPS)):
            value = getattr(self, key)
            _check(value in allowed, key, f"one of {', '.join(allowed)}", value)
        for key in ("n_layers", "n_bins", "batch_size", "kl_batch_size", "n_samples",
                    "checkpoint_every", "n_test", "n_data", "cnf_hidden", "cnf_layers",
                    "solver_steps", "ode_batch_size", "n_nll_cnf"):
            _check(getattr(self, key) > 0, key, "a positive integer", getattr(self, key))
        for key in ("steps", "warmup", "seed", "kl_start", "ot_block_size"):
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
        _check(self.sigma >= 0, "sigma", "a number >= 0", self.sigma)
        _check(
            self.model in CNF_MODELS or self.n_layers >= 2, "n_layers",
            "an integer >= 2 for a coupling flow (each layer transforms half the coordinates)",
            self.n_layers,
        )
        if self.model in CNF_MODELS:
            _check(
                self.w_kl == 0, "w_kl",
                f"0 for model {self.model!r} (flow matching trains on data only; reverse KL is "
                "not supported for a CNF)", self.w_kl,
            )
            _check(self.kl_start == 0, "kl_start", f"0 for model {self.model!r}", self.kl_start)
            _check(
                self.amp == "none" or self.dtype == "float32", "amp",
                "'none' with dtype float64 (bf16 autocast is for float32 models)", self.amp,
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> TrainConfig:
        """Build from a mapping; unknown keys raise with a did-you-mean suggestion."""
        check_known_keys(cls, data, source)
        return cls(**data)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied (``None`` values are ignored), validated.

        Changing ``model`` between a coupling flow and ``cnf`` also resets ``w_kl`` to the new
        model's default when it held the old one's and is not among ``changes``.
        """
        changes = {k: v for k, v in changes.items() if v is not None}
        model = changes.get("model", self.model)
        if (model in CNF_MODELS) != (self.model in CNF_MODELS) and "w_kl" not in changes:
            if self.w_kl == (0.0 if self.model in CNF_MODELS else 1.0):
                changes["w_kl"] = 0.0 if model in CNF_MODELS else 1.0
        return dataclasses.replace(self, **changes)

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
