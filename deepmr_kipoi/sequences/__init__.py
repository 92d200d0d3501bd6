"""DNA sequences as one-hot arrays: encoding in any alphabet order and layout, FASTA/BED reading.

The one-hot encoding, alphabets and layouts are :mod:`deepmr_kipoi.sequences.encoding` (whose
docstring describes the representation and the layouts); FASTA and BED reading and interval resizing
are :mod:`deepmr_kipoi.sequences.fasta`. ``deepmr_kipoi.sequences`` offers both.
"""

from deepmr_kipoi.sequences.encoding import (
    ALPHABET,
    LAYOUTS,
    check_alphabet,
    check_onehot,
    decode,
    from_layout,
    is_n,
    one_hot,
    random_sequences,
    reorder_alphabet,
    to_layout,
)
from deepmr_kipoi.sequences.fasta import (
    DUPLICATE_OPTIONS,
    IUPAC_OPTIONS,
    check_letters,
    fasta_index,
    read_fasta,
    read_fasta_bed,
    resize_center,
)

__all__ = [
    "ALPHABET",
    "DUPLICATE_OPTIONS",
    "IUPAC_OPTIONS",
    "LAYOUTS",
    "check_alphabet",
    "check_letters",
    "check_onehot",
    "decode",
    "fasta_index",
    "from_layout",
    "is_n",
    "one_hot",
    "random_sequences",
    "read_fasta",
    "read_fasta_bed",
    "reorder_alphabet",
    "resize_center",
    "to_layout",
]
