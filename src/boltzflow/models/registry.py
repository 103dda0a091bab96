"""The model kinds by name, and the config parser that needs them (a kind owns its section)."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from ..config import (
    CONFIG_VERSION,
    SHARED,
    RunConfig,
    SystemSection,
    default_kind,
    is_flat,
    read_config_file,
    switch_kind,
    upgrade_flat,
)
from ..errors import ConfigError
from .base import ModelKind
from .cnf import CNFKind
from .coupling import CouplingKind
from .internal import InternalKind
from .tbg import TBGKind
from .tbg_ic import TBGICKind

#: Model kinds by name: ``model:`` in a config, ``--model`` on the command line.
KINDS: dict[str, type[ModelKind]] = {
    kind.name: kind for kind in (CouplingKind, InternalKind, CNFKind, TBGKind, TBGICKind)
}

#: Model names of version 1, and what they are now.
RENAMED = {"spline": "coupling or internal", "affine": "coupling (transform: affine)"}


def get_kind(name: str) -> type[ModelKind]:
    """The kind called ``name``; an unknown name raises a one-line :class:`ConfigError`."""
    if name in KINDS:
        return KINDS[name]
    if name in RENAMED:
        raise ConfigError(
            f"model {name!r} is now called {RENAMED[name]} (internal for molecules); "
            "see docs/architecture.md"
        )
    close = difflib.get_close_matches(str(name), list(KINDS), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ConfigError(f"unknown model {name!r}; {hint}known models: {', '.join(KINDS)}")


def parse_config(data: dict[str, Any], *, source: str = "config") -> RunConfig:
    """A validated :class:`RunConfig` from a nested mapping.

    ``model`` defaults to ``auto`` (``internal`` for molecules, else ``coupling``); a kind's
    :attr:`~ModelKind.train_defaults` and :attr:`~ModelKind.sample_defaults` fill the keys the
    mapping leaves out. A flat version-1 mapping is upgraded with a deprecation warning.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must be a mapping of keys to values")
    data = dict(data)
    version = data.pop("version", CONFIG_VERSION)
    if version != CONFIG_VERSION or is_flat(data):
        data = upgrade_flat(data, source)
    model = data.pop("model", "auto")
    if model == "auto":
        system = data.get("system") or {}
        model = "tbg" if system.get("dataset") else default_kind(system.get("id", SystemSection.id))
    kind = get_kind(model)
    _check_sections(data, kind, source)
    defaults = {"system": kind.system_defaults, "train": kind.train_defaults,
                "sample": kind.sample_defaults}
    parts = {
        name: section.from_dict({**defaults.get(name, {}), **(data.get(name) or {})},
                                source=source)
        for name, section in SHARED.items()
    }
    params = kind.Params.from_dict(data.get(kind.name) or {}, source=source)
    config = RunConfig(model=kind.name, params=params, **parts)
    kind.check_config(config)
    return config


def _check_sections(data: dict[str, Any], kind: type[ModelKind], source: str) -> None:
    """Only the shared sections and the kind's own, each a mapping."""
    allowed = sorted({*SHARED, kind.name})
    for key, value in data.items():
        if key in allowed and value is not None and not isinstance(value, dict):
            raise ConfigError(f"section {key!r} of {source} must be a mapping of keys to "
                              f"values, got {value!r}")
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(
                f"unknown section {key!r} in {source} for model {kind.name!r}; {hint}"
                f"allowed sections: {', '.join(allowed)}"
            )


def override_config(config: RunConfig, changes: dict[str, Any]) -> RunConfig:
    """A validated copy with ``{"section.key": value}`` changes; ``None`` values are skipped.

    Example:
        >>> cfg = override_config(parse_config({}), {"train.steps": 10, "train.seed": None})
        >>> cfg.train.steps
        10
    """
    return config_with(config.to_dict(), changes, source="options")


def config_with(data: dict[str, Any], changes: dict[str, Any], *, source: str = "config"
                ) -> RunConfig:
    """:func:`parse_config` of ``data`` (a config file's mapping) with ``{"section.key": value}``
    changes applied first (``None`` values skipped), so that ``model: auto`` sees them.
    ``{"model": name}`` switches the kind (its own section starts from its defaults)."""
    data = dict(data)
    if is_flat(data) or data.get("version", CONFIG_VERSION) != CONFIG_VERSION:
        data = upgrade_flat(data, source)
    for dotted, value in changes.items():
        if value is None:
            continue
        section, _, key = dotted.partition(".")
        if section == "model":
            data = switch_kind(data, value) if data.get("model", value) != value else data
            data["model"] = value
        else:
            data[section] = {**(data.get(section) or {}), key: value}
    return parse_config(data, source=source)


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a config file (TOML or YAML)."""
    return parse_config(read_config_file(path), source=str(path))
