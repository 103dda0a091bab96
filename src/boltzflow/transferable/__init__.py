"""The transferable Boltzmann generator (Klein & Noé, NeurIPS 2024): one equivariant CNF for
many peptides, trained by flow matching across dipeptides, sampled zero-shot on unseen ones.

Example:
    >>> from boltzflow.transferable import TBGConfig, load_tbg, sample_peptide, train_tbg
    >>> train_tbg(TBGConfig(steps=2000), "data/dipeptides", "runs/tbg")  # doctest: +SKIP
    >>> model = load_tbg("runs/tbg")  # doctest: +SKIP
    >>> result = sample_peptide(model, "dipeptide:NY", 1000, out="runs/tbg-NY")  # doctest: +SKIP
"""

from __future__ import annotations

from .config import TBGConfig
from .encoding import FEATURES, MoleculeEncoding, PeptideContext, Vocabulary, encode_topology
from .evaluate import EvaluationResult, evaluate_split
from .field import PeptideEGNN
from .model import CHECKPOINT_KIND, TBGModel, describe_solver, load_tbg
from .pairing import GroupSlots, align_molecule, molecule_ot
from .quadrature import QuadratureCNF, gauss_legendre
from .sample import PeptideResult, analyze_samples, draw_samples, sample_peptide
from .train import PeptideFrames, flow_matching_batch_loss, load_peptides, train_tbg

__all__ = [
    "CHECKPOINT_KIND",
    "FEATURES",
    "EvaluationResult",
    "GroupSlots",
    "MoleculeEncoding",
    "PeptideContext",
    "PeptideEGNN",
    "PeptideFrames",
    "PeptideResult",
    "QuadratureCNF",
    "TBGConfig",
    "TBGModel",
    "Vocabulary",
    "align_molecule",
    "analyze_samples",
    "describe_solver",
    "draw_samples",
    "encode_topology",
    "evaluate_split",
    "flow_matching_batch_loss",
    "gauss_legendre",
    "load_peptides",
    "load_tbg",
    "molecule_ot",
    "sample_peptide",
    "train_tbg",
]
