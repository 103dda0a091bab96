"""Flow-matching training of one :class:`PeptideEGNN` across many peptides.

A step draws ``peptides_per_batch`` peptides and ``frames_per_peptide`` MD frames of each,
centres them and divides by one global scale (``x1``), draws mean-free Gaussian prior samples
over each molecule's real atoms (``x0``), pairs them by equivariant OT *within each molecule*
(:func:`~boltzflow.transferable.pairing.molecule_ot`), puts them on the straight path with a
small width σ (:class:`~boltzflow.training.LinearPath`), pads the molecules into one batch and
regresses the field on the target velocities, averaging the squared error over real atoms only.

Every random draw of step ``s`` comes from seeds derived from ``(seed, s)`` and the molecule's
slot in the global batch, never from the process's RNG state or rank, so a resumed run equals an
uninterrupted one and ``torchrun`` ranks (each taking a share of the peptides) equal one process.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import BoltzflowError
from ..geometry import center
from ..io import write_text_atomic
from ..training import LinearPath, distributed, fit, load_checkpoint
from ..training.fit import CHECKPOINT_NAME
from .config import TBGConfig
from .encoding import MoleculeEncoding, PeptideContext, Vocabulary, encode_topology
from .model import TBGModel, build_field
from .pairing import GroupSlots, molecule_ot

__all__ = ["PeptideFrames", "flow_matching_batch_loss", "load_peptides", "train_tbg"]

CONFIG_NAME = "tbg_config.json"
#: Config keys a resumed run may change: the length, the device and the sampling defaults.
_RESUMABLE_CHANGES = (
    "steps", "device", "checkpoint_every", "solver", "rk4_steps", "quadrature_nodes",
    "quadrature_power", "sample_batch",
)


@dataclass
class PeptideFrames:
    """The training frames of one peptide.

    Attributes:
        sequence: e.g. ``"AC"``.
        system_id: e.g. ``"dipeptide:AC"``.
        encoding: its per-atom tokens and permutation groups.
        slots: its permutation groups by size (for the pairing).
        frames: centred MD frames ``[F, N, 3]`` in nm, float32.
    """

    sequence: str
    system_id: str
    encoding: MoleculeEncoding
    slots: GroupSlots
    frames: Tensor


def load_peptides(
    dataset: str | Path,
    split: str | None = "train",
    *,
    vocabulary: Vocabulary | None = None,
    max_frames: int = 0,
) -> list[PeptideFrames]:
    """The peptides of ``split`` in a dipeptide dataset, encoded, with centred frames.

    The topology is read from each peptide's dataset (``topology.pdb``, written by MD), so no
    force field has to be built. ``max_frames > 0`` thins each peptide evenly in time.
    """
    from ..data.dipeptides import load_index

    index = load_index(dataset)
    out = []
    for seq in index.sequences(split):
        entry = index.entry(seq)
        data = index.dataset(seq)
        if len(data) == 0:
            continue
        encoding = _encode_dataset(data, entry.system_id, vocabulary)
        if encoding.n_atoms != data.n_atoms:
            raise BoltzflowError(
                f"{entry.system_id}: topology has {encoding.n_atoms} atoms, frames "
                f"{data.n_atoms}; the dataset {index.root / entry.path} is inconsistent"
            )
        x = data.positions
        if 0 < max_frames < len(x):
            x = x[torch.linspace(0, len(x) - 1, max_frames).round().long()]
        out.append(PeptideFrames(
            seq, entry.system_id, encoding, GroupSlots.from_groups(encoding.groups),
            center(x.to(torch.float32)),
        ))
    return out


def _encode_dataset(data, system_id: str, vocabulary: Vocabulary | None) -> MoleculeEncoding:
    """Encode from the dataset's ``topology.pdb`` (fast) when its hydrogen bonds are sound.

    A PDB's bonds come from mdtraj's residue templates, which miss some terminal hydrogens
    (e.g. H2/H3 of an N-terminal proline); then, or when a hydrogen's bonded heavy atom is not
    its nearest one in the first frame, the force-field system's topology is used instead.
    """
    topology = data.topology
    if topology is not None and _hydrogens_sound(topology, data.positions[0]):
        return encode_topology(topology, vocabulary, label=system_id)
    from .. import systems

    return encode_topology(systems.get(system_id).topology, vocabulary, label=system_id)


def _hydrogens_sound(topology, x: Tensor) -> bool:
    """Every hydrogen is bonded to exactly one heavy atom, its nearest one in ``x [N, 3]``."""
    heavy = [a.index for a in topology.atoms if a.element.symbol != "H"]
    parent: dict[int, list[int]] = {}
    for a, b in topology.bonds:
        for h, o in ((a, b), (b, a)):
            if h.element.symbol == "H" and o.element.symbol != "H":
                parent.setdefault(h.index, []).append(o.index)
    for atom in topology.atoms:
        if atom.element.symbol != "H":
            continue
        bonded = parent.get(atom.index, [])
        if len(bonded) != 1:
            return False
        nearest = heavy[int(torch.cdist(x[atom.index][None], x[heavy]).argmin())]
        if nearest != bonded[0]:
            return False
    return True


def global_scale(peptides: list[PeptideFrames]) -> float:
    """Root-mean-square centred coordinate (nm) over every frame and atom of all peptides."""
    total = sum(float(p.frames.double().square().sum()) for p in peptides)
    count = sum(p.frames.numel() for p in peptides)
    return math.sqrt(total / count)


def flow_matching_batch_loss(
    field: torch.nn.Module,
    molecules: list[tuple[PeptideFrames, Tensor, Tensor, Tensor]],
    *,
    path: LinearPath,
    seeds: list[int],
    normalizer: float,
    device: torch.device,
    bf16: bool = False,
    minibatch_ot: bool = True,
    bucket_size: int = 0,
) -> Tensor:
    """``Σ |v(t, xt) - ut|²`` over real atoms of padded batches, divided by ``normalizer``.

    Args:
        field: the conditioned field.
        molecules: ``(peptide, x0 [K, N, 3], x1 [K, N, 3], t [K])`` per molecule, in field units.
        path: the conditional path (its noise is drawn under ``seeds[i]`` for molecule ``i``).
        seeds: one seed per molecule.
        normalizer: number of real atoms the mean runs over (of the whole global batch).
        device: where the field runs.
        bf16: bfloat16 autocast of the field's forward pass.
        minibatch_ot: re-assign prior to data samples among each molecule's ``K`` frames.
        bucket_size: molecules per padded forward pass, grouped by size (pair cost grows as
            ``N²``, so padding a 20-atom peptide to 50 atoms wastes 6×); 0: all in one pass.
    """
    if len(seeds) != len(molecules):
        raise ValueError(f"need one seed per molecule: {len(seeds)} for {len(molecules)}")
    items = []
    for (peptide, x0, x1, t), seed in zip(molecules, seeds):
        x0 = molecule_ot(x0, x1, peptide.slots, minibatch=minibatch_ot)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            xt, ut = path(x0, x1, t)
        items.append((peptide.encoding, xt, ut, t))
    items.sort(key=lambda item: item[0].n_atoms)
    size = bucket_size if bucket_size > 0 else len(items)
    total = torch.zeros((), device=device)
    for start in range(0, len(items), size):
        bucket = items[start : start + size]
        encodings = [e for e, _, _, t in bucket for _ in range(len(t))]
        context = PeptideContext.pad(encodings).to(device)
        n_max = context.n_atoms
        xt = torch.cat([_pad(x, n_max) for _, x, _, _ in bucket]).to(device)
        ut = torch.cat([_pad(u, n_max) for _, _, u, _ in bucket]).to(device)
        t = torch.cat([t for *_, t in bucket]).to(device)
        autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
        with autocast:
            v = field(t, xt, context)
        total = total + ((v.float() - ut).square().sum(-1) * context.mask).sum()
    return total / normalizer


def _pad(x: Tensor, n: int) -> Tensor:
    return torch.nn.functional.pad(x, (0, 0, 0, n - x.shape[1]))


def _check_run_dir(out: Path, config: TBGConfig, dataset: Path) -> None:
    """Refuse to continue a run of another configuration or dataset in ``out``."""
    record = {"config": config.to_dict(), "dataset": str(dataset.resolve())}
    path = out / CONFIG_NAME
    if path.exists() and (out / "checkpoint.pt").exists():
        previous = json.loads(path.read_text())
        before = {**TBGConfig().to_dict(), **previous.get("config", {})}  # older runs lack new keys
        differing = sorted(
            k for k, v in record["config"].items()
            if before.get(k) != v and k not in _RESUMABLE_CHANGES
        )
        if previous.get("dataset") != record["dataset"]:
            differing.append("dataset")
        if differing:
            raise BoltzflowError(
                f"{out} already holds a tbg run with a different configuration "
                f"(keys: {', '.join(differing)}); use another --out or delete it"
            )
    write_text_atomic(path, json.dumps(record, indent=2) + "\n")


def train_tbg(
    config: TBGConfig,
    dataset: str | Path,
    out: str | Path,
    *,
    progress: bool = True,
    echo: Callable[[str], None] | None = print,
) -> TBGModel:
    """Train a transferable BG on the ``train`` split of a dipeptide dataset into ``out``.

    Writes ``out/checkpoint.pt`` (field, optimizer, step; metadata kind ``"tbg"`` with the
    vocabulary, scale and sizes), ``out/train_log.csv`` (loss, epoch, lr, gradient norm) and
    ``out/tbg_config.json``; resumes from an existing checkpoint of the same configuration
    (``steps`` may be raised). ``echo`` gets one line per completed epoch (a pass over as many
    frames as the training set holds).

    Raises:
        BoltzflowError: no training peptides, bad device, or ``out`` holds another run.
    """
    out, dataset = Path(out), Path(dataset)
    w = distributed.init(config.device)
    device = _device(config.device, w.local_rank)
    peptides = load_peptides(dataset, "train", max_frames=config.max_frames)
    if not peptides:
        raise BoltzflowError(
            f"the dipeptide dataset {dataset} has no training peptides with frames; build it "
            "with `boltzflow dataset dipeptides --out DIR`"
        )
    if w.is_main:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BoltzflowError(f"cannot create output directory {out}: {exc.strerror}") from exc
        _check_run_dir(out, config, dataset)
    distributed.barrier()
    scale = global_scale(peptides)
    if (out / CHECKPOINT_NAME).exists():  # a resumed run keeps its length unit
        scale = float(load_checkpoint(out / CHECKPOINT_NAME)["metadata"].get("scale", scale))
    field = build_field(config).to(device)
    model = TBGModel(field, scale, config, {
        "dataset": str(dataset),
        "train_sequences": [p.sequence for p in peptides],
    })
    n_frames = sum(len(p.frames) for p in peptides)
    n_mol = min(config.peptides_per_batch, len(peptides))
    k = config.frames_per_peptide
    if n_mol < w.size:
        raise BoltzflowError(
            f"peptides_per_batch ({n_mol}) must be at least the number of ranks ({w.size})"
        )
    mine = list(distributed.shard(n_mol, w))
    path = LinearPath(config.sigma)
    epoch_losses: list[float] = []
    if w.is_main and echo is not None:
        echo(
            f"training on {len(peptides)} peptides, {n_frames} frames "
            f"({n_mol} peptides × {k} frames per step; scale {scale:.4f} nm)"
        )

    def loss_fn(step: int) -> dict[str, Tensor]:
        gen = torch.Generator().manual_seed(distributed.step_seed(config.seed, step))
        chosen = torch.randperm(len(peptides), generator=gen)[:n_mol].tolist()
        draws = []
        for pid in chosen:  # every rank draws the whole global batch (cheap), then keeps its share
            p = peptides[pid]
            idx = torch.randint(len(p.frames), (k,), generator=gen)
            x0 = center(torch.randn(k, p.encoding.n_atoms, 3, generator=gen))
            draws.append((p, x0, p.frames[idx] / scale, torch.rand(k, generator=gen)))
        n_real = sum(p.encoding.n_atoms * k for p, *_ in draws)
        seeds = [distributed.step_seed(config.seed, step, 1000 + j) for j in mine]
        loss = flow_matching_batch_loss(
            field, [draws[j] for j in mine], path=path, seeds=seeds,
            normalizer=n_real / w.size, device=device, bf16=config.bf16,
            minibatch_ot=config.minibatch_ot, bucket_size=config.bucket_size,
        )
        _epoch_progress(step, float(loss.detach()))
        return {"loss": loss, "epoch": torch.tensor((step + 1) * n_mol * k / n_frames)}

    def _epoch_progress(step: int, loss: float) -> None:
        epoch_losses.append(loss)
        done = (step + 1) * n_mol * k // n_frames  # completed passes over the training frames
        if done > step * n_mol * k // n_frames and w.is_main and echo is not None:
            mean = sum(epoch_losses) / len(epoch_losses)
            share = " (rank 0's share)" if w.distributed else ""
            echo(f"epoch {done} done at step {step + 1}/{config.steps}: "
                 f"mean loss {mean:.4f}{share}")
            epoch_losses.clear()

    fit(
        field, loss_fn, steps=config.steps, lr=config.lr, schedule=config.lr_schedule,
        warmup=config.warmup, clip_grad=config.clip_grad, out_dir=out,
        checkpoint_every=config.checkpoint_every, progress=progress,
        metadata=model.metadata_for_checkpoint(),
    )
    distributed.barrier()
    model.metadata["step"] = config.steps
    return model


def _device(name: str, local_rank: int = 0) -> torch.device:
    if name == "cuda":
        if not torch.cuda.is_available():
            raise BoltzflowError("device 'cuda' was asked for but no CUDA GPU is visible; use cpu")
        return torch.device("cuda", local_rank)
    if name != "cpu":
        raise BoltzflowError(f"device must be cpu or cuda, got {name!r}")
    return torch.device("cpu")


def describe(model: TBGModel) -> dict[str, Any]:
    """A short JSON-ready description of a model (for reports)."""
    return {
        "hidden": model.field.hidden,
        "n_layers": model.field.n_layers,
        "scale_nm": model.scale,
        "train_peptides": len(model.metadata.get("train_sequences", [])),
        "step": model.metadata.get("step"),
    }
