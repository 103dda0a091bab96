"""Checkpoint files that hold only tensors and plain data, written atomically.

A checkpoint is a dict of tensors, dicts, lists, tuples, strings, numbers, bools and ``None``.
It is read with ``torch.load(..., weights_only=True)``, so opening one never runs code: a file
that holds anything else (a pickled class instance, a callable) is refused.

Example:
    >>> save_checkpoint("run/ckpt.pt", {"step": 3, "model": model.state_dict()})  # doctest: +SKIP
    >>> load_checkpoint("run/ckpt.pt")["step"]  # doctest: +SKIP
    3
"""

from __future__ import annotations

import pickle
from collections import OrderedDict
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import BoltzflowError
from ..io import write_atomic

#: Bumped when the checkpoint layout changes incompatibly.
CHECKPOINT_VERSION = 1

_SCALARS = (str, int, float, bool, type(None))


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` (plus the format version) to ``path`` atomically.

    NumPy scalars become Python numbers, NumPy arrays tensors and paths strings.

    Raises:
        ValueError: ``state`` holds something other than tensors and plain data; the message
            names its key path (e.g. ``metadata.callback``).
    """
    plain = to_plain({"version": CHECKPOINT_VERSION, **state}, "")
    write_atomic(path, lambda f: torch.save(plain, f))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, checking its version.

    Raises:
        BoltzflowError: the file is missing, unreadable, of another format version, or holds
            objects other than tensors and plain data (refused without running anything).
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise BoltzflowError(f"no checkpoint at {path}") from None
    except pickle.UnpicklingError as exc:
        if _holds_objects(exc):
            raise BoltzflowError(
                f"checkpoint {path} holds objects other than tensors and plain data and is "
                "refused for safety; write it again with boltzflow's save_checkpoint"
            ) from None
        raise BoltzflowError(f"checkpoint {path} is unreadable or truncated") from None
    except Exception as exc:
        raise BoltzflowError(f"checkpoint {path} is unreadable or truncated ({exc})") from exc
    version = state.get("version") if isinstance(state, dict) else None
    if version != CHECKPOINT_VERSION:
        raise BoltzflowError(
            f"checkpoint {path} has format version {version!r}; this boltzflow reads version "
            f"{CHECKPOINT_VERSION} — retrain, or use the boltzflow version that wrote it"
        )
    return state


def to_plain(value: Any, key: str) -> Any:
    """``value`` as tensors and plain data only; ``key`` is its path, named in errors.

    Raises:
        ValueError: ``value`` holds an object that has no plain form.
    """
    if isinstance(value, np.generic) and not isinstance(value, np.object_):
        return value.item()  # before the scalars: np.float64 is a float
    if isinstance(value, torch.Tensor) or type(value) in _SCALARS:
        return value
    if isinstance(value, np.ndarray) and value.dtype != object:
        return torch.from_numpy(value.copy())
    if isinstance(value, PathLike):
        return str(value)
    if isinstance(value, dict):
        return _plain_dict(value, key)
    if isinstance(value, list | tuple):
        items = [to_plain(v, f"{key}[{i}]") for i, v in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    where = key or "the state"
    raise ValueError(
        f"checkpoint entry {where} is a {type(value).__module__}.{type(value).__qualname__}; "
        "a checkpoint holds only tensors, dicts, lists, tuples, strings, numbers, bools and "
        "None — store its state_dict() or plain values instead"
    )


def _plain_dict(value: dict, key: str) -> dict:
    """A dict (``OrderedDict`` kept, with a state dict's ``_metadata``) of plain values."""
    out: dict = OrderedDict() if isinstance(value, OrderedDict) else {}
    for k, v in value.items():
        where = f"{key}.{k}" if key else str(k)
        plain_key = to_plain(k, where)
        if type(plain_key) not in _SCALARS:
            raise ValueError(f"checkpoint key {where} must be a string or a number")
        out[plain_key] = to_plain(v, where)
    metadata = getattr(value, "_metadata", None)  # torch's state-dict versions
    if isinstance(out, OrderedDict) and metadata is not None:
        out._metadata = to_plain(metadata, f"{key}._metadata")
    return out


def _holds_objects(exc: pickle.UnpicklingError) -> bool:
    """Whether torch's weights-only unpickler refused a global (a class or a callable)."""
    message = str(exc)
    return "GLOBAL" in message or "allowlist" in message
