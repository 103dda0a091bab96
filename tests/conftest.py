"""Shared test set-up: few torch threads (2 cores here), seeded RNG, shared fixtures.

Tests live in folders mirroring ``src/boltzflow``; the helper modules next to this file
(``cli_util``, ``molecules_util``) are imported by name, so this folder goes on ``sys.path``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

TESTS = str(Path(__file__).parent)
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_dipeptides(tmp_path_factory) -> Path:
    """A dipeptide dataset: AA, GS, PA (train split) and AC (test split), 40 frames of 4 ps MD
    each (a few seconds)."""
    from boltzflow.data.dipeptides import build_dipeptide_dataset

    root = tmp_path_factory.mktemp("dipeptides")
    build_dipeptide_dataset(root, ["AA", "GS", "PA", "AC"], ns=0.004, frame_interval_ps=0.1,
                            equilibration_ps=0.1, progress=False)
    return root
