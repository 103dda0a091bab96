"""``tbg``: the transferable Boltzmann generator (Klein & Noé, NeurIPS 2024).

One conditioned equivariant field (:class:`~boltzflow.continuous.PeptideEGNN`) for many
peptides, trained by flow matching across a dipeptide dataset and sampled zero-shot on peptides
it never saw: :meth:`TBGKind.flow_for` gives the CNF of any peptide its vocabulary encodes.

A training step draws ``batch_size / frames_per_peptide`` peptides and ``frames_per_peptide``
MD frames of each, centres them and divides by one global scale (``x1``), draws mean-free
Gaussian prior samples over each molecule's real atoms (``x0``), pairs them by equivariant OT
*within each molecule* (:func:`~boltzflow.training.pairing.molecule_ot`), puts them on the
straight path with a small width σ, pads the molecules into one batch and regresses the field
on the target velocities, averaging the squared error over real atoms only. Every random draw of
step ``s`` comes from seeds derived from ``(seed, s)`` and the molecule's slot in the global
batch, so a resumed run equals an uninterrupted one and ``torchrun`` ranks (each taking a share
of the peptides) equal one process.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..config import RunConfig, Section, check, check_choice
from ..continuous import RK4, ContinuousFlow, Dopri5, Exact, PeptideEGNN, particle_flow
from ..continuous.quadrature import QuadratureCNF
from ..errors import BoltzflowError
from ..flow import Flow
from ..geometry import center
from ..systems.base import System
from ..systems.encoding import MoleculeEncoding, PeptideContext, Vocabulary, encode_topology
from ..systems.molecule import MolecularSystem
from ..training import LinearPath, distributed, velocity_loss
from ..training.pairing import GroupSlots, molecule_ot
from .base import ModelKind, TrainingSet, check_whole_molecules

__all__ = [
    "PeptideFrames",
    "TBGBatch",
    "TBGKind",
    "TBGParams",
    "flow_matching_batch_loss",
    "load_peptides",
    "upgrade_tbg_config",
]

SOLVERS = ("rk4", "dopri5", "gauss-legendre")
PAIRINGS = ("equivariant-ot", "aligned")
AMPS = ("bf16", "none")


@dataclass
class TBGParams(Section):
    """The transferable BG's section.

    Attributes:
        hidden: EGNN feature width.
        n_layers: EGNN message-passing layers.
        n_rbf: Gaussian radial basis functions of the pair distance added to every edge
            network's input (0: only ``d²``, as in the plain EGNN).
        bond_graph: also give every edge network the covalent-graph distance of the pair.
        chiral: an SE(3)- instead of E(3)-equivariant field that can learn L-chirality; its
            samples get no mirror fix.
        frames_per_peptide: MD frames per peptide in one batch (``train.batch_size`` frames in
            all); the equivariant-OT assignment runs among these.
        sigma: width of the Gaussian around the straight conditional path (field units).
        pairing: ``equivariant-ot`` (re-assign prior to data samples among the frames of one
            peptide, then align) or ``aligned`` (only align each pair).
        amp: bfloat16 autocast of the field's forward pass in training (``bf16``/``none``).
        bucket_size: peptides per padded forward pass, grouped by atom count; 0: the whole
            batch in one pass (best on a GPU).
        solver: how sampling and likelihoods integrate the flow: ``rk4`` (the exact divergence
            at every stage), ``dopri5`` (adaptive, rtol = atol = 1e-5) or ``gauss-legendre``
            (RK4 trajectory, log-determinant by Gauss–Legendre quadrature of the exact
            divergence at ``quadrature_nodes`` times, :class:`QuadratureCNF`).
        solver_steps: RK4 steps for sampling (4 field evaluations each).
        quadrature_nodes: Gauss–Legendre nodes of ``gauss-legendre``.
        quadrature_power: ``gauss-legendre`` integrates in ``s`` with ``t = 1 - (1 - s)^p``
            (its steps and nodes crowd toward the data end; 1: uniform in ``t``).
    """

    NAME = "tbg"
    hidden: int = 32
    n_layers: int = 4
    n_rbf: int = 0
    bond_graph: bool = False
    chiral: bool = False
    frames_per_peptide: int = 8
    sigma: float = 0.01
    pairing: str = "equivariant-ot"
    amp: str = "none"
    bucket_size: int = 4
    solver: str = "gauss-legendre"
    solver_steps: int = 16
    quadrature_nodes: int = 8
    quadrature_power: float = 1.0

    def validate(self) -> None:
        """Ranges and choices."""
        self.positive("hidden", "n_layers", "frames_per_peptide", "solver_steps",
                      "quadrature_nodes")
        self.non_negative("n_rbf", "sigma", "bucket_size")
        check(self.quadrature_power >= 1, "tbg.quadrature_power", ">= 1", self.quadrature_power)
        check_choice(self.solver, "tbg.solver", SOLVERS)
        check_choice(self.pairing, "tbg.pairing", PAIRINGS)
        check_choice(self.amp, "tbg.amp", AMPS)


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


@dataclass
class TBGBatch:
    """One rank's share of a training step.

    Attributes:
        molecules: ``(peptide, x0 [K, N, 3], x1 [K, N, 3], t [K])`` in field units.
        seeds: the path-noise seed of each molecule.
        normalizer: real atoms of the global batch per rank (the loss is a mean over them).
        epoch: passes over the training frames completed after this step.
    """

    molecules: list[tuple[PeptideFrames, Tensor, Tensor, Tensor]]
    seeds: list[int]
    normalizer: float
    epoch: float


class TBGKind(ModelKind):
    """One conditioned EGNN field for many peptides; the CNF of any peptide it can encode."""

    name = "tbg"
    Params = TBGParams
    transferable = True
    system_defaults = {"id": ""}
    train_defaults = {"lr": 5e-3, "warmup": 100, "clip_grad": 10.0, "checkpoint_every": 250,
                      "batch_size": 128}
    sample_defaults = {"batch_size": 50, "n_samples": 1000}
    resumable = ("tbg.solver", "tbg.solver_steps", "tbg.quadrature_nodes",
                 "tbg.quadrature_power")
    refine_unsupported = (
        "its log q costs an ODE solve with the exact divergence per sample, and AIS/SMC need "
        "log q and its gradient at every MCMC step (hundreds of such solves per sample); "
        "refine a coupling or internal-coordinate model instead"
    )

    def __init__(self, config: RunConfig, module: PeptideEGNN, scale: float,
                 info: dict[str, Any], peptides: list[PeptideFrames] | None = None):
        super().__init__(config, module, None)
        self.scale, self.peptides = scale, peptides or []
        self.info.update(info)

    @classmethod
    def check_config(cls, config: RunConfig) -> None:
        """Whole peptides per batch."""
        check_whole_molecules(config)

    @classmethod
    def build(cls, config: RunConfig, source: TrainingSet) -> TBGKind:
        """A fresh field for the ``train`` split of ``source.dataset`` (its global length
        scale from the frames, or from the checkpoint being resumed)."""
        peptides = load_peptides(source.dataset, "train", max_frames=config.system.max_frames)
        if not peptides:
            raise BoltzflowError(
                f"the dipeptide dataset {source.dataset} has no training peptides with frames; "
                "build it with `boltzflow dataset dipeptides --out DIR`"
            )
        scale = float((source.previous or {}).get("scale", global_scale(peptides)))
        info = {"dataset": str(source.dataset), "train_sequences": [p.sequence for p in peptides]}
        return cls(config, build_field(config.params, config.train.seed), scale, info, peptides)

    @classmethod
    def restore(cls, config: RunConfig, metadata: dict[str, Any], system: System | None
                ) -> ModelKind:
        """The field's architecture, vocabulary and scale from the checkpoint."""
        scale = float(metadata["scale"])
        if not (math.isfinite(scale) and scale > 0):
            raise BoltzflowError(f"the checkpoint has an invalid scale {scale!r}")
        field = PeptideEGNN(
            Vocabulary.from_dict(metadata["vocabulary"]), hidden=int(metadata["hidden"]),
            n_layers=int(metadata["n_layers"]), n_frequencies=int(metadata["n_frequencies"]),
            n_rbf=int(metadata.get("n_rbf", 0)), rbf_max=float(metadata.get("rbf_max", 3.0)),
            bond_graph=bool(metadata.get("bond_graph", False)),
            chiral=bool(metadata.get("chiral", False)),
        )
        info = {k: metadata[k] for k in ("dataset", "train_sequences") if k in metadata}
        return cls(config, field, scale, info)

    def metadata(self) -> dict[str, Any]:
        """Vocabulary, scale, field sizes and the training peptides."""
        f = self.module
        return {
            **self.info, "vocabulary": f.vocabulary.to_dict(), "scale": self.scale,
            "hidden": f.hidden, "n_layers": f.n_layers, "n_frequencies": f.n_frequencies,
            "n_rbf": f.n_rbf, "rbf_max": f.rbf_max, "bond_graph": f.bond_graph,
            "chiral": f.chiral,
        }

    @property
    def train_sequences(self) -> list[str]:
        """Sequences of the peptides the model was trained on."""
        return list(self.info.get("train_sequences", []))

    def batch(self, step: int) -> TBGBatch:
        """This rank's molecules of the global batch."""
        w, seed = distributed.world(), self.config.train.seed
        k = self.params.frames_per_peptide
        n_mol = min(self.config.train.batch_size // k, len(self.peptides))
        if n_mol < w.size:
            raise BoltzflowError(
                f"peptides per batch ({n_mol}) must be at least the number of ranks ({w.size})"
            )
        gen = torch.Generator().manual_seed(distributed.step_seed(seed, step))
        chosen = torch.randperm(len(self.peptides), generator=gen)[:n_mol].tolist()
        draws = []
        for pid in chosen:  # every rank draws the whole global batch (cheap), keeps its share
            p = self.peptides[pid]
            idx = torch.randint(len(p.frames), (k,), generator=gen)
            x0 = center(torch.randn(k, p.encoding.n_atoms, 3, generator=gen))
            draws.append((p, x0, p.frames[idx] / self.scale, torch.rand(k, generator=gen)))
        mine = distributed.shard(n_mol, w)
        return TBGBatch(
            molecules=[draws[j] for j in mine],
            seeds=[distributed.step_seed(seed, step, 1000 + j) for j in mine],
            normalizer=sum(p.encoding.n_atoms * k for p, *_ in draws) / w.size,
            epoch=(step + 1) * n_mol * k / sum(len(p.frames) for p in self.peptides),
        )

    def loss(self, batch: TBGBatch, step: int) -> dict[str, Tensor]:
        """Flow matching over real atoms (``loss``), and the epoch reached (``epoch``)."""
        loss = flow_matching_batch_loss(
            self.module, batch.molecules, path=LinearPath(self.params.sigma), seeds=batch.seeds,
            normalizer=batch.normalizer, device=self.device, bf16=self.params.amp == "bf16",
            minibatch_ot=self.params.pairing == "equivariant-ot",
            bucket_size=self.params.bucket_size,
        )
        return {"loss": loss, "epoch": torch.tensor(batch.epoch)}

    def encode(self, system: System) -> MoleculeEncoding:
        """The encoding of a molecule (raises for tokens outside the vocabulary)."""
        if not isinstance(system, MolecularSystem):
            raise BoltzflowError(f"system {system.id!r} is not a molecule: a tbg model samples "
                                 "peptides")
        return encode_topology(system.topology, self.module.vocabulary, label=system.id)

    def flow_for(self, system: System) -> Flow:
        """The CNF of ``system`` alone (no padding), in nm, with the configured integrator:
        ``Flow(MeanFreeNormal(N, 3), CNF(field) → ×scale)``, exact ``log_q`` on the mean-free
        subspace."""
        encoding = self.encode(system)
        context = encoding.context().to(self.device)
        n, p = encoding.n_atoms, self.params
        if p.solver == "gauss-legendre":
            cnf = QuadratureCNF(self.module, context, nodes=p.quadrature_nodes,
                                rk4_steps=p.solver_steps, time_power=p.quadrature_power)
        else:
            solver = RK4(p.solver_steps) if p.solver == "rk4" else Dopri5()
            cnf = ContinuousFlow(self.module, solver, Exact(), context=context)
        return particle_flow(cnf, n, 3, self.scale).to(self.device)

    def mirror_symmetric(self) -> bool:
        """An E(3) field's density is mirror-symmetric; a chiral field's is not."""
        return not self.module.chiral

    def describe(self) -> str:
        """Field size, training and the integrator."""
        return (f"PeptideEGNN {self.params.n_layers} × {self.params.hidden}, trained on "
                f"{len(self.train_sequences)} peptides; sampling: {describe_solver(self.params)}")


def describe_solver(params: TBGParams) -> str:
    """How ``params`` integrates the flow for sampling and likelihoods, in words."""
    if params.solver == "rk4":
        return f"RK4 × {params.solver_steps} steps, exact divergence at every stage"
    if params.solver == "dopri5":
        return "adaptive Dopri5 (rtol = atol = 1e-5), exact divergence"
    warp = (f", both in s with t = 1 − (1 − s)^{params.quadrature_power:g}"
            if params.quadrature_power != 1 else "")
    return (f"RK4 × {params.solver_steps} steps, log-det by {params.quadrature_nodes}-node "
            f"Gauss–Legendre quadrature of the exact divergence{warp}")


def build_field(params: TBGParams, seed: int, vocabulary: Vocabulary | None = None
                ) -> PeptideEGNN:
    """A fresh field sized by ``params`` (initialized from ``seed``)."""
    torch.manual_seed(seed)
    return PeptideEGNN(vocabulary, hidden=params.hidden, n_layers=params.n_layers,
                       n_rbf=params.n_rbf, bond_graph=params.bond_graph, chiral=params.chiral)


def load_peptides(
    dataset: str | Path, split: str | None = "train", *, vocabulary: Vocabulary | None = None,
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
        entry, data = index.entry(seq), index.dataset(seq)
        if len(data) == 0:
            continue
        encoding = encode_dataset(data, entry.system_id, vocabulary)
        if encoding.n_atoms != data.n_atoms:
            raise BoltzflowError(
                f"{entry.system_id}: topology has {encoding.n_atoms} atoms, frames "
                f"{data.n_atoms}; the dataset {index.root / entry.path} is inconsistent"
            )
        x = data.positions
        if 0 < max_frames < len(x):
            x = x[torch.linspace(0, len(x) - 1, max_frames).round().long()]
        out.append(PeptideFrames(seq, entry.system_id, encoding,
                                 GroupSlots.from_groups(encoding.groups),
                                 center(x.to(torch.float32))))
    return out


def encode_dataset(data: Any, system_id: str, vocabulary: Vocabulary | None) -> MoleculeEncoding:
    """Encode from the dataset's ``topology.pdb`` (fast) when its hydrogen bonds are sound.

    A PDB's bonds come from mdtraj's residue templates, which miss some terminal hydrogens
    (e.g. H2/H3 of an N-terminal proline); then, or when a hydrogen's bonded heavy atom is not
    its nearest one in the first frame, the force-field system's topology is used instead.
    """
    topology = data.topology
    if topology is not None and hydrogens_sound(topology, data.positions[0]):
        return encode_topology(topology, vocabulary, label=system_id)
    from .. import systems

    return encode_topology(systems.get(system_id).topology, vocabulary, label=system_id)


def hydrogens_sound(topology: Any, x: Tensor) -> bool:
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
        if heavy[int(torch.cdist(x[atom.index][None], x[heavy]).argmin())] != bonded[0]:
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
        context = PeptideContext.pad([e for e, _, _, t in bucket for _ in range(len(t))])
        context = context.to(device)
        xt = torch.cat([pad_atoms(x, context.n_atoms) for _, x, _, _ in bucket]).to(device)
        ut = torch.cat([pad_atoms(u, context.n_atoms) for _, _, u, _ in bucket]).to(device)
        t = torch.cat([t for *_, t in bucket]).to(device)
        autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
        with autocast:
            v = field(t, xt, context)
        total = total + velocity_loss(v, ut, context.mask, reduction="sum")
    return total / normalizer


def pad_atoms(x: Tensor, n: int) -> Tensor:
    """``x: [B, N, 3]`` padded with zeros to ``[B, n, 3]``."""
    return torch.nn.functional.pad(x, (0, 0, 0, n - x.shape[1]))


#: ``TBGConfig`` keys of version 1 → ``section.key`` of version 2.
TBG_V1_KEYS = {
    "hidden": "tbg.hidden", "n_layers": "tbg.n_layers", "n_rbf": "tbg.n_rbf",
    "bond_graph": "tbg.bond_graph", "chiral": "tbg.chiral", "steps": "train.steps",
    "frames_per_peptide": "tbg.frames_per_peptide", "lr": "train.lr",
    "lr_schedule": "train.lr_schedule", "warmup": "train.warmup",
    "clip_grad": "train.clip_grad", "sigma": "tbg.sigma", "bucket_size": "tbg.bucket_size",
    "max_frames": "system.max_frames", "seed": "train.seed",
    "checkpoint_every": "train.checkpoint_every", "device": "train.device",
    "solver": "tbg.solver", "rk4_steps": "tbg.solver_steps",
    "quadrature_nodes": "tbg.quadrature_nodes", "quadrature_power": "tbg.quadrature_power",
    "sample_batch": "sample.batch_size",
}


def upgrade_tbg_config(old: dict[str, Any], dataset: str) -> dict[str, Any]:
    """A version-1 ``TBGConfig`` mapping (``tbg_config.json``) as a version-2 config mapping."""
    out: dict[str, Any] = {"model": "tbg", "system": {"id": "", "dataset": dataset}}
    for key, value in old.items():
        if key in TBG_V1_KEYS:
            section, _, name = TBG_V1_KEYS[key].partition(".")
            out.setdefault(section, {})[name] = value
    frames = int(old.get("frames_per_peptide", TBGParams.frames_per_peptide))
    out.setdefault("train", {})["batch_size"] = int(old.get("peptides_per_batch", 16)) * frames
    tbg = out.setdefault("tbg", {})
    tbg["pairing"] = "equivariant-ot" if old.get("minibatch_ot", True) else "aligned"
    tbg["amp"] = "bf16" if old.get("bf16", False) else "none"
    return out
