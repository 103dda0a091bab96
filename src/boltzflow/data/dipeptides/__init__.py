"""The dipeptide dataset: MD of many uncapped dipeptides, one dataset each, plus an index.

The train/test split is by sequence and fixed: a peptide is ``"test"`` iff its sequence is in
:data:`TEST_SEQUENCES`. :mod:`.catalogue` holds the sequences and the split, :mod:`.index` the
``index.json`` format and :mod:`.build` the resumable, sharded MD builder.

Example:
    >>> index = build_dipeptide_dataset("dipeptides", ["AC", "KI"], ns=1.0)  # doctest: +SKIP
    >>> load_index("dipeptides").sequences("test")  # doctest: +SKIP
    ['AC', 'KI']
"""

from __future__ import annotations

from .build import build_dipeptide_dataset, peptide_seed
from .catalogue import (
    AMINO_ACID_LETTERS,
    FORCEFIELD,
    SOLVENT,
    TEMPERATURE,
    TEST_SEQUENCES,
    all_sequences,
    default_train_sequences,
    normalize_sequences,
    split_of,
)
from .index import (
    INDEX_FORMAT,
    INDEX_FORMAT_VERSION,
    INDEX_NAME,
    DipeptideIndex,
    PeptideEntry,
    load_index,
    write_index,
)

__all__ = [
    "AMINO_ACID_LETTERS",
    "FORCEFIELD",
    "INDEX_FORMAT",
    "INDEX_FORMAT_VERSION",
    "INDEX_NAME",
    "SOLVENT",
    "TEMPERATURE",
    "TEST_SEQUENCES",
    "DipeptideIndex",
    "PeptideEntry",
    "all_sequences",
    "build_dipeptide_dataset",
    "default_train_sequences",
    "load_index",
    "normalize_sequences",
    "peptide_seed",
    "split_of",
    "write_index",
]
