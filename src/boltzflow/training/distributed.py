"""Scale-out with ``torch.distributed`` under ``torchrun`` (gloo on CPU, NCCL on GPU).

Launch any command with ``torchrun --nproc-per-node N -m boltzflow ...``. ``torchrun`` sets
``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; :func:`init` starts the process group from them. A plain
``python -m boltzflow ...`` is world size 1 and nothing here does any communication.
"""

from __future__ import annotations

import atexit
import datetime
import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place among the ranks."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world() -> World:
    """The current world (size 1 unless a process group is initialized)."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return World()


def init(device: str = "cpu") -> World:
    """Start the process group when launched by ``torchrun`` (idempotent); returns the world.

    On CUDA each rank uses ``cuda:LOCAL_RANK`` and NCCL; on CPU, gloo.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size > 1 and dist.is_available() and not dist.is_initialized():
        backend = "nccl" if device == "cuda" else "gloo"
        if device == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend=backend)
        atexit.register(_shutdown)  # gloo's threads must not outlive the interpreter (SIGABRT)
    return world()


def _shutdown() -> None:
    """Leave the process group together: a rank that tore gloo down while the other still
    used it aborted the other ("terminate called without an active exception", seen a few
    times under load), so every rank waits for the rest first (at most 30 s: a rank that
    crashed is not waited for longer)."""
    if dist.is_available() and dist.is_initialized():
        try:
            if dist.get_backend() == "gloo":
                dist.monitored_barrier(timeout=datetime.timedelta(seconds=30))
            else:
                dist.barrier()
        except Exception:  # noqa: BLE001 - a peer is gone: nothing left to wait for
            pass
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if world().distributed:
        dist.barrier()


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    """A reproducible 63-bit seed for ``(seed, step, rank)``.

    Seeding each step makes a run independent of how it was interrupted and resumed, and gives
    every rank its own deterministic stream.
    """
    digest = hashlib.blake2b(f"{seed}:{step}:{rank}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def gather_cat(t: torch.Tensor) -> torch.Tensor:
    """Concatenate equally-shaped per-rank tensors along dim 0 on every rank."""
    w = world()
    if not w.distributed:
        return t
    parts = [torch.empty_like(t) for _ in range(w.size)]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts)


def shard(n: int, w: World | None = None) -> range:
    """The indices ``range(n)`` this rank owns (contiguous, sizes differ by at most one)."""
    w = w or world()
    per, extra = divmod(n, w.size)
    start = w.rank * per + min(w.rank, extra)
    return range(start, start + per + (1 if w.rank < extra else 0))


def device(name: str) -> torch.device:
    """The torch device for ``name`` (``cpu`` or ``cuda``) on this rank (``cuda:LOCAL_RANK``).

    Raises:
        BoltzflowError: ``cuda`` without a visible GPU, or another name.
    """
    from ..errors import BoltzflowError

    if name == "cuda":
        if not torch.cuda.is_available():
            raise BoltzflowError("device 'cuda' was asked for but no CUDA GPU is visible; use cpu")
        return torch.device("cuda", world().local_rank)
    if name != "cpu":
        raise BoltzflowError(f"device must be cpu or cuda, got {name!r}")
    return torch.device("cpu")
