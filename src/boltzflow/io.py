"""Atomic file writes: a crash never leaves a half-written file under its real name."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from .errors import BoltzflowError


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(f)`` on a temporary file next to ``path``, fsync it, then rename it.

    Raises:
        BoltzflowError: the directory cannot be created or written (read-only, disk full, no
            permission); the previous file at ``path``, if any, is left intact.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}", suffix=".tmp")
    except OSError as exc:
        raise _write_error(path, exc) from exc
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise _write_error(path, exc) from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_atomic(path, lambda f: f.write(text.encode()))


def remove_stale_temporaries(directory: str | Path, name: str) -> None:
    """Delete temporaries of ``name`` left in ``directory`` by a process killed mid-write."""
    for stale in Path(directory).glob(f".{name}*.tmp"):
        stale.unlink(missing_ok=True)


def _write_error(path: Path, exc: OSError) -> BoltzflowError:
    hint = {
        errno.ENOSPC: "free some disk space or write elsewhere (--out)",
        errno.EROFS: "the file system is read-only: choose another --out",
        errno.EACCES: "no permission: choose another --out",
        errno.EDQUOT: "disk quota exceeded: free space or write elsewhere (--out)",
    }.get(exc.errno, "choose another --out")
    return BoltzflowError(
        f"cannot write {path}: {exc.strerror or exc}; {hint} (earlier files are intact)"
    )


def prepare_out_dir(out: str | Path) -> Path:
    """Create the output directory ``out`` (and parents); it must be writable.

    Raises:
        BoltzflowError: it cannot be created or written to.
    """
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BoltzflowError(f"cannot create output directory {out}: {exc.strerror}") from exc
    if not os.access(out, os.W_OK):
        raise BoltzflowError(f"output directory {out} is not writable; choose another --out")
    return out
