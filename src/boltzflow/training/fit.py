"""A short, readable training loop: Adam, LR schedule, gradient clipping, NaN guard,
atomic checkpoints, resume, CSV log and a progress bar."""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import TrainingDiverged
from ..io import remove_stale_temporaries, write_text_atomic
from .checkpoint import load_checkpoint, save_checkpoint
from .distributed import world

#: ``loss_fn(step) -> {"loss": scalar, **parts}``; parts are logged.
LossFn = Callable[[int], dict[str, Tensor]]

CHECKPOINT_NAME = "checkpoint.pt"
LOG_NAME = "train_log.csv"


def make_scheduler(
    optimizer: torch.optim.Optimizer, schedule: str, steps: int, warmup: int = 0
) -> torch.optim.lr_scheduler.LambdaLR:
    """``constant`` or ``cosine`` (to 1 % of the initial rate) after a linear ``warmup``."""
    if schedule not in ("constant", "cosine"):
        raise ValueError(f"schedule must be 'constant' or 'cosine', got {schedule!r}")

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, steps - warmup))
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class _LossModule(nn.Module):
    """Wraps ``loss_fn`` as a module's forward so DDP can synchronize the model's gradients."""

    def __init__(self, model: nn.Module, loss_fn: LossFn):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, step: int) -> dict[str, Tensor]:
        return self.loss_fn(step)


def _any_rank(flag: bool) -> bool:
    """True if ``flag`` is true on any rank (collective; plain ``flag`` in one process)."""
    w = world()
    if not w.distributed:
        return flag
    import torch.distributed as dist

    t = torch.tensor([float(flag)])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def _mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    w = world()
    if not w.distributed:
        return values
    import torch.distributed as dist

    t = torch.tensor(list(values.values()), dtype=torch.float64)
    dist.all_reduce(t)
    return dict(zip(values, (t / w.size).tolist()))


def _rewrite_log(path: Path, up_to_step: int) -> None:
    """Drop log rows past ``up_to_step`` (they will be redone after a resume)."""
    if not path.exists():
        return
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= up_to_step]
    buf = io.StringIO()
    csv.writer(buf).writerows(kept)
    write_text_atomic(path, buf.getvalue())


def _widen_log(path: Path, fields: list[str]) -> list[str]:
    """The columns to append rows of ``fields`` to the log at ``path``: its own, plus any new
    ones (a resumed run that adds a loss part, e.g. a reverse KL from a fine-tuning step on);
    the file is rewritten with the wider header and empty cells in the older rows."""
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    header = rows[0] if rows else []
    added = [k for k in fields if k not in header]
    if not added:
        return header
    wide = header[:header.index("lr")] + added + header[header.index("lr"):] \
        if "lr" in header else header + added
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(wide)
    for r in rows[1:]:
        old = dict(zip(header, r))
        writer.writerow([old.get(k, "") for k in wide])
    write_text_atomic(path, buf.getvalue())
    return wide


def fit(
    model: nn.Module,
    loss_fn: LossFn,
    *,
    steps: int,
    lr: float = 1e-3,
    schedule: str = "cosine",
    warmup: int = 0,
    clip_grad: float | None = 100.0,
    weight_decay: float = 0.0,
    out_dir: str | Path | None = None,
    checkpoint_every: int = 500,
    log_every: int = 10,
    resume: bool = True,
    progress: bool = True,
    metadata: dict[str, Any] | None = None,
) -> list[dict[str, float]]:
    """Minimize ``loss_fn`` over ``model``'s parameters for ``steps`` Adam steps.

    With ``out_dir``, a checkpoint (model, optimizer, scheduler, RNG state, step, ``metadata``)
    is written atomically every ``checkpoint_every`` steps and at the end, and a CSV log every
    ``log_every`` steps; with ``resume`` an existing checkpoint is continued from its step, and
    the continued run is identical to an uninterrupted one.

    Under ``torchrun`` (a process group is initialized) the model is wrapped in
    ``DistributedDataParallel``: each rank computes ``loss_fn`` on its share of the batch,
    gradients are averaged, logged values are averaged over ranks, and only rank 0 writes the
    checkpoint and the log.

    Returns:
        The logged rows (``step``, ``loss``, parts, ``lr``, ``grad_norm``, ``time``) of this call;
        ``time`` is the training wall-clock in seconds, summed over resumed calls.

    Raises:
        TrainingDiverged: the loss or gradient norm became NaN/inf; nothing is written for the
            bad step, the last checkpoint stays valid.
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    scheduler = make_scheduler(optimizer, schedule, steps, warmup)
    w = world()
    compute = loss_fn
    if w.distributed:
        from torch.nn.parallel import DistributedDataParallel

        compute = DistributedDataParallel(_LossModule(model, loss_fn))
    out = Path(out_dir) if out_dir is not None else None
    ckpt_path = out / CHECKPOINT_NAME if out is not None else None
    log_path = out / LOG_NAME if out is not None else None
    if out is not None and w.is_main:
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(out, CHECKPOINT_NAME)  # left by a kill mid-write

    start, elapsed = 0, 0.0
    if ckpt_path is not None and resume and ckpt_path.exists():
        state = load_checkpoint(ckpt_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        start = state["step"]
        elapsed = float(state.get("elapsed", 0.0))
        if w.is_main:
            _rewrite_log(log_path, start)

    def checkpoint(step: int) -> None:
        if ckpt_path is None or not w.is_main:
            return
        save_checkpoint(
            ckpt_path,
            {
                "step": step,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": torch.get_rng_state(),
                "elapsed": time.perf_counter() - t0,  # training seconds, summed over resumes
                "metadata": metadata or {},
            },
        )

    rows: list[dict[str, float]] = []
    writer = log_file = None
    bar = _progress(progress and w.is_main, total=steps, completed=start)
    t0 = time.perf_counter() - elapsed  # the log's ``time`` counts on across resumes
    try:
        model.train()
        for step in range(start, steps):
            parts = compute(step)
            loss = parts["loss"]
            if _any_rank(not bool(torch.isfinite(loss))):
                raise TrainingDiverged(_diverged_message("loss", loss, step, parts, lr, ckpt_path))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            max_norm = clip_grad if clip_grad is not None else math.inf
            grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
            if not torch.isfinite(grad_norm):
                raise TrainingDiverged(
                    _diverged_message("gradient norm", grad_norm, step, parts, lr, ckpt_path)
                )
            optimizer.step()
            scheduler.step()
            done = step + 1
            if done % log_every == 0 or done == steps:
                values = _mean_over_ranks({k: float(v.detach()) for k, v in parts.items()})
                row = {"step": done, **values}
                row.update(lr=scheduler.get_last_lr()[0], grad_norm=float(grad_norm))
                row["time"] = time.perf_counter() - t0
                rows.append(row)
                if log_path is not None and w.is_main:
                    if writer is None:
                        new = not log_path.exists() or log_path.stat().st_size == 0
                        fields = list(row) if new else _widen_log(log_path, list(row))
                        log_file = log_path.open("a", newline="")
                        writer = csv.DictWriter(log_file, fieldnames=fields, restval="")
                        if new:
                            writer.writeheader()
                    writer.writerow(row)
                    log_file.flush()
                if bar is not None:
                    bar.set_postfix_str(f"loss {row['loss']:.3f}")
            if bar is not None:
                bar.update(1)
            if done % checkpoint_every == 0 or done == steps:
                checkpoint(done)
    finally:
        if log_file is not None:
            log_file.close()
        if bar is not None:
            bar.close()
        model.eval()
    return rows


def _diverged_message(
    what: str, value: Tensor, step: int, parts: dict[str, Tensor], lr: float, ckpt: Path | None
) -> str:
    shown = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in parts.items())
    where = f"; the last good checkpoint is {ckpt}" if ckpt is not None and ckpt.exists() else ""
    return (
        f"training diverged: {what} is {float(value.detach())} at step {step} ({shown}); "
        f"lower the learning rate (lr={lr:g}), lower clip_grad, or put more weight on the "
        f"likelihood term{where}"
    )


def _progress(enabled: bool, total: int, completed: int):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    # disable=None: no bar when stderr is not a terminal (logs, CI); the CSV log has it all.
    return tqdm(
        total=total, initial=completed, desc="train", unit="step", dynamic_ncols=True, disable=None
    )
