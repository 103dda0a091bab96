"""Bijections: coupling layers, spline kernels, normalization, reshaping."""

from __future__ import annotations

from .base import Bijection, Chain, Inverse
from .bounds import TailBound
from .builders import coupling_flow, coupling_masks, torsion_codes
from .coupling import AffineCoupling, SplineCoupling
from .nets import MLP
from .normalization import Normalization
from .reshape import MeanFreeEmbedding, Reshape, helmert_basis
from .splines import circular_rational_quadratic_spline, rational_quadratic_spline

__all__ = [
    "MLP",
    "AffineCoupling",
    "Bijection",
    "Chain",
    "Inverse",
    "MeanFreeEmbedding",
    "Normalization",
    "Reshape",
    "SplineCoupling",
    "TailBound",
    "circular_rational_quadratic_spline",
    "coupling_flow",
    "coupling_masks",
    "torsion_codes",
    "helmert_basis",
    "rational_quadratic_spline",
]

from .internal import ICs, InternalCoordinates, bond_angle, dihedral, place_atom  # noqa: E402
from .zmatrix import ZMatrix, build_zmatrix, zmatrix_from_graph  # noqa: E402

__all__ += [
    "ICs",
    "InternalCoordinates",
    "ZMatrix",
    "bond_angle",
    "build_zmatrix",
    "dihedral",
    "place_atom",
    "zmatrix_from_graph",
]
