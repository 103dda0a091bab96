"""Atomic checkpoint files: write to a temporary file, then rename."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import BoltzflowError
from ..io import write_atomic

#: Bumped when the checkpoint layout changes incompatibly.
CHECKPOINT_VERSION = 1


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` (plus the format version) to ``path`` atomically."""
    write_atomic(path, lambda f: torch.save({"version": CHECKPOINT_VERSION, **state}, f))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, checking its version."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise BoltzflowError(f"no checkpoint at {path}") from None
    except Exception as exc:
        raise BoltzflowError(f"checkpoint {path} is unreadable or truncated ({exc})") from exc
    version = state.get("version") if isinstance(state, dict) else None
    if version != CHECKPOINT_VERSION:
        raise BoltzflowError(
            f"checkpoint {path} has format version {version!r}; this boltzflow reads version "
            f"{CHECKPOINT_VERSION} — retrain, or use the boltzflow version that wrote it"
        )
    return state
