"""The dipeptides: the 400 ordered pairs of amino acids, the fixed train/test split, and the
force field, solvent and temperature every peptide of the dataset is simulated with."""

from __future__ import annotations

from ...errors import BoltzflowError

FORCEFIELD = "amber14"
SOLVENT = "obc2"
#: Simulation temperature (K).
TEMPERATURE = 310.0

#: The 20 standard amino acids, one-letter codes, alphabetical.
AMINO_ACID_LETTERS = "ACDEFGHIKLMNPQRSTVWY"

#: The held-out dipeptides: never used for training, only for evaluation.
#:
#: Chosen so that every one of the 20 amino acids occurs at least once, and the pairs mix the
#: residue classes: small/aliphatic hydrophobic (A, V, L, I, M), aromatic (F, W, Y, H),
#: positively charged (K, R), negatively charged (D, E), polar (S, T, N, Q, C) and the
#: backbone-special G and P (both orders, GP and PG, since Pro restricts the phi of its own
#: residue and Gly opens the left-handed region). AC, KI and NY are the examples the project's
#: issue names. The other 386 of the 400 ordered pairs are training data (docs/dipeptides.md).
TEST_SEQUENCES: tuple[str, ...] = (
    "AC",  # small hydrophobic + thiol (polar)
    "DW",  # negative + large aromatic
    "ET",  # negative + polar hydroxyl
    "FQ",  # aromatic + polar amide
    "GP",  # glycine + proline (backbone-special, this order)
    "HS",  # histidine (aromatic, titratable) + polar
    "KI",  # positive + branched aliphatic
    "MV",  # sulfur hydrophobic + branched aliphatic
    "NY",  # polar amide + aromatic hydroxyl
    "PG",  # proline + glycine (backbone-special, the other order)
    "RL",  # positive (guanidinium) + aliphatic
    "TK",  # polar hydroxyl + positive
    "WG",  # large aromatic + glycine
    "YD",  # aromatic + negative
)


def all_sequences() -> tuple[str, ...]:
    """All 400 ordered pairs ``XY`` of the 20 amino acids, sorted."""
    return tuple(a + b for a in AMINO_ACID_LETTERS for b in AMINO_ACID_LETTERS)


def default_train_sequences() -> tuple[str, ...]:
    """Every ordered pair of the 20 amino acids that is not in :data:`TEST_SEQUENCES` (386)."""
    test = set(TEST_SEQUENCES)
    return tuple(s for s in all_sequences() if s not in test)


def split_of(sequence: str) -> str:
    """``"test"`` if ``sequence`` is held out (in :data:`TEST_SEQUENCES`), else ``"train"``."""
    return "test" if sequence in TEST_SEQUENCES else "train"


def normalize_sequences(sequences: str | list[str] | tuple[str, ...]) -> list[str]:
    """Upper-case, validated, de-duplicated sequences, in the order given.

    Accepts ``"AC,KI"`` or a list; ``"dipeptide:AC"`` is read as ``"AC"``.

    Raises:
        BoltzflowError: an empty list, or a sequence that is not two one-letter amino acid codes.
    """
    if isinstance(sequences, str):
        sequences = sequences.split(",")
    out: list[str] = []
    for raw in sequences:
        seq = str(raw).strip()
        if seq.lower().startswith("dipeptide:"):
            seq = seq.partition(":")[2]
        seq = seq.upper()
        if len(seq) != 2 or any(c not in AMINO_ACID_LETTERS for c in seq):
            raise BoltzflowError(
                f"sequence {str(raw).strip()!r} is not a dipeptide: give two one-letter codes of "
                f"{AMINO_ACID_LETTERS}, e.g. AC,KI"
            )
        if seq not in out:
            out.append(seq)
    if not out:
        raise BoltzflowError("no sequences given: list some (e.g. AC,KI), or use --all / --split")
    return out
