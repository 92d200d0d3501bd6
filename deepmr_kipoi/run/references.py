"""Stage 1, inputs: the run's reference sequences, one-hot encoded: seeded random sequences, FASTA
records, FASTA regions of BED intervals, or the model's own Kipoi dataloader.

Missing or unreadable files, BED intervals off their chromosome and sequences of the wrong length
raise :class:`~deepmr_kipoi.errors.DeepMRInputError` with one line naming the fix.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.run.config import SEQUENCE_SOURCES, RunConfig
from deepmr_kipoi.run.model import is_factory_spec

#: ``run.json``'s words for seeded random reference sequences.
RANDOM_SOURCE = "seeded random sequences"


def sequence_source(config: RunConfig) -> str:
    """Where a run's reference sequences come from, in words (for ``run.json``)."""
    if config.fasta and config.bed:
        return "FASTA regions of BED intervals"
    if config.fasta:
        return "FASTA records"
    if config.sequences == "dataloader":
        return "the model's Kipoi dataloader"
    return RANDOM_SOURCE


def load_sequences(config: RunConfig, model_length: int | None):
    """Reference sequences as ``(ids, onehot)``.

    Parameters
    ----------
    config : RunConfig
    model_length : int or None
        The model's input length (None: any length, then ``config.sequence_length`` or an error).

    Returns
    -------
    ids : list of str, length N
    onehot : ndarray of float32, shape (N, L, 4), ACGT

    Raises
    ------
    DeepMRInputError
        Missing files, BED intervals off the chromosome, sequences of the wrong length, ...
    """
    source, length = _source_and_length(config, model_length)
    n = config.n_sequences
    if n is not None and int(n) < 1:
        raise DeepMRInputError(f"n_sequences must be >= 1, got {n}")
    if source == "fasta":
        ids, onehot = _fasta_sequences(config, length, n)
    elif source == "dataloader":
        ids, onehot = _dataloader_sequences(config, n)
    else:
        from deepmr_kipoi import sequences as seqmod

        n_random = 20 if n is None else int(n)
        onehot = seqmod.random_sequences(n_random, _declared(length), seed=config.seed)
        ids = [f"random_{i}" for i in range(n_random)]
    ids = [str(i) for i in ids]
    onehot = np.asarray(onehot, dtype=np.float32)
    if onehot.ndim != 3 or onehot.shape[-1] != 4 or len(onehot) == 0:
        raise DeepMRInputError(f"no usable sequences were read (array shape {onehot.shape})")
    if model_length is not None and onehot.shape[1] != model_length:
        raise DeepMRInputError(
            f"the sequences are {onehot.shape[1]} bp but the model takes {model_length} bp; "
            f"give sequences of length {model_length}"
        )
    return ids, onehot


def _source_and_length(config: RunConfig, model_length: int | None) -> tuple[str, int | None]:
    """Where the sequences come from and their length (None: not known before reading them)."""
    source = "fasta" if config.fasta else config.sequences
    if source not in SEQUENCE_SOURCES:
        raise DeepMRInputError(
            f"unknown sequence source {config.sequences!r}; use one of {', '.join(SEQUENCE_SOURCES)}"
        )
    if config.bed and not config.fasta:
        raise DeepMRInputError("--bed needs --fasta (the genome the intervals refer to)")
    if config.sequence_length and model_length and config.sequence_length != model_length:
        raise DeepMRInputError(
            f"--sequence-length {config.sequence_length} differs from the model's input length "
            f"{model_length}; drop --sequence-length"
        )
    return source, config.sequence_length or model_length


def _declared(length: int | None) -> int:
    """The sequence length that sampling needs (random sequences, BED regions)."""
    if length is None:
        raise DeepMRInputError(
            "the model does not declare its input length; pass --sequence-length"
        )
    return int(length)


def _fasta_sequences(config: RunConfig, length: int | None, n: int | None):
    """FASTA records, or the FASTA regions of BED intervals sampled with the run's seed."""
    from deepmr_kipoi import sequences as seqmod

    fasta = Path(config.fasta)
    if not fasta.is_file():
        raise DeepMRInputError(f"FASTA file not found: {fasta}; check the --fasta path")
    if not config.bed:
        ids, onehot = _read_fasta_checked(seqmod, fasta, length, config.iupac)
        return (ids, onehot) if n is None else (ids[: int(n)], onehot[: int(n)])
    bed = Path(config.bed)
    if not bed.is_file():
        raise DeepMRInputError(f"BED file not found: {bed}; check the --bed path")
    return _text_input(
        seqmod.read_fasta_bed,
        (fasta, bed),
        _declared(length),
        n=n,
        seed=config.seed,
        iupac=config.iupac,
        duplicates=config.duplicates,
    )


def _dataloader_sequences(config: RunConfig, n: int | None):
    """Sequences from the Kipoi model's own dataloader."""
    from deepmr_kipoi import kipoi_models

    if isinstance(config.model, dict):
        raise DeepMRInputError(
            "--sequences dataloader reads one model's dataloader, but the run is a model "
            "panel; give --fasta (with --bed) or random sequences"
        )
    if not config.model or is_factory_spec(config.model):
        raise DeepMRInputError("--sequences dataloader needs a Kipoi model (--model NAME or DIR)")
    return kipoi_models.dataloader_sequences(
        config.model,
        source=config.source,
        dataloader_args=config.dataloader_args,
        n=n,
        trust_model_code=config.trust_model_code,
    )


def _text_input(reader, paths, *args, **kwargs):
    """Call ``reader(*paths, *args)``; a binary or mis-encoded file is named in one line."""
    try:
        return reader(*paths, *args, **kwargs)
    except UnicodeDecodeError:
        for p in paths:
            try:
                with open(p, "rb") as fh:
                    head = fh.read(2)
                if head != b"\x1f\x8b":  # gzip is read as such
                    Path(p).read_text()
            except UnicodeDecodeError:
                raise DeepMRInputError(
                    f"{p} is not a text file (binary or not UTF-8); give a plain or gzipped text file"
                ) from None
        raise DeepMRInputError(
            f"{', '.join(map(str, paths))}: not readable as text; give plain or gzipped text files"
        ) from None


def _read_fasta_checked(seqmod, fasta: Path, length: int | None, iupac: str = "refuse"):
    try:
        return _text_input(seqmod.read_fasta, (fasta,), iupac=iupac)
    except DeepMRInputError:
        raise
    except ValueError as err:
        if "different lengths" in str(err):
            want = f"{length} bp each" if length else "one length"
            raise DeepMRInputError(
                f"the sequences in {fasta} have different lengths; give sequences of {want}"
            ) from None
        raise
