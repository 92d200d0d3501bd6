"""Reference sequences from FASTA and BED files: reading, interval resizing, letter checks, the
FASTA index (the one-hot encoding is :mod:`deepmr_kipoi.sequences.encoding`)."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.sequences.encoding import one_hot

logger = logging.getLogger(__name__)


def resize_center(start, end, length: int):
    """Resize intervals to ``length`` around their centre (the convention of kipoiseq).

    As ``kipoiseq.Interval.resize`` on the + strand: the centre is ``ceil((start + end) / 2)`` and the
    new start is ``centre - ceil(length / 2)``.

    Parameters
    ----------
    start, end : int or array_like of int, shape (K,)
        Half-open 0-based intervals.
    length : int
        New length, >= 1.

    Returns
    -------
    (start, end) : ints or numpy.ndarray of int64, shape (K,)
        ``end - start == length``; the start may be negative (the caller checks chromosome bounds).
    """
    if int(length) != length or length < 1:
        raise DeepMRInputError(f"length must be a positive integer, got {length!r}")
    s, e = np.asarray(start, dtype=np.int64), np.asarray(end, dtype=np.int64)
    new_start = (s + e + 1) // 2 - (int(length) + 1) // 2
    new_end = new_start + int(length)
    if new_start.ndim == 0:
        return int(new_start), int(new_end)
    return new_start, new_end


def _read_bed(bed: str | os.PathLike) -> list[tuple[str, int, int, str | None]]:
    rows = []
    with open(bed) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            f = line.rstrip("\n").split("\t")
            if len(f) < 3:
                f = line.split()
            try:
                chrom, start, end = f[0], int(f[1]), int(f[2])
            except (IndexError, ValueError) as err:
                raise DeepMRInputError(
                    f"{bed} line {lineno} is not a BED record (chrom, start, end): {line.strip()!r}"
                ) from err
            if end <= start or start < 0:
                raise DeepMRInputError(
                    f"{bed} line {lineno}: interval {chrom}:{start}-{end} is empty or negative"
                )
            name = f[3] if len(f) > 3 and f[3] not in ("", ".") else None
            rows.append((chrom, start, end, name))
    return rows


def read_fasta_bed(
    fasta: str | os.PathLike,
    bed: str | os.PathLike,
    length: int,
    n: int | None = None,
    seed: int = 0,
    *,
    iupac: str = "refuse",
    duplicates: str = "drop",
    index_dir: str | os.PathLike | None = None,
) -> tuple[list[str], np.ndarray]:
    """Read BED regions from an indexed FASTA, each resized to ``length`` around its centre.

    Parameters
    ----------
    fasta : path
        Genome FASTA; a ``.fai`` index is created by pysam when missing.
    bed : path
        BED file (chrom, start, end[, name]); 0-based half-open.
    length : int
        Model input length; intervals are resized with :func:`resize_center`.
    n : int, optional
        Sample this many intervals without replacement (``numpy.random.default_rng(seed)``); the
        sampled intervals keep their BED order. Default: all intervals.
    seed : int
        Seed for the subsample.
    iupac : {"refuse", "n"}
        Letters other than A, C, G, T, N (IUPAC ambiguity codes such as R or Y, or anything else):
        refuse with an error naming them, or read them as N (skipped by ISM).
    duplicates : {"drop", "keep"}
        Intervals that resize to the same region are analysed once (``"drop"``, with a warning) or
        as often as they occur.
    index_dir : path, optional
        Where to write the ``.fai`` index when the FASTA has none and its own folder is read-only
        (default: a ``deepmr_kipoi`` folder in the system's temporary directory). An index older
        than its FASTA, or one whose records do not fit the file, is rebuilt there too.

    Returns
    -------
    ids : list of str
        The BED name when present, else ``"chrom:start-end"`` of the resized interval.
    onehot : numpy.ndarray, shape (n, length, 4), float32
        ACGT one-hot; soft-masked (lower-case) bases count as bases, N as all-zero columns.
    """
    import pysam

    rows = _read_bed(bed)
    if not rows:
        raise DeepMRInputError(f"BED file {bed} has no intervals")
    rows = _drop_duplicate_regions(_sample_rows(rows, n, seed, bed), length, bed, duplicates)
    ids, seqs = [], []
    with pysam.FastaFile(str(fasta), filepath_index=fasta_index(fasta, index_dir)) as fa:
        sizes = dict(zip(fa.references, fa.lengths))
        for chrom, start, end, name in rows:
            s, e = resize_center(start, end, length)
            label = f"{chrom}:{start}-{end}"
            if chrom not in sizes:
                raise DeepMRInputError(
                    f"interval {label}: chromosome {chrom!r} is not in {fasta} (it has e.g. "
                    f"{', '.join(list(sizes)[:3])}); check the chromosome naming (chr1 vs 1)"
                )
            if s < 0 or e > sizes[chrom]:
                raise DeepMRInputError(
                    f"interval {label} resized to {length} bp ({chrom}:{s}-{e}) runs off {chrom} "
                    f"(length {sizes[chrom]}); drop it or use a shorter length"
                )
            seqs.append(fa.fetch(chrom, s, e))
            ids.append(name if name is not None else f"{chrom}:{s}-{e}")
    for label, seq in zip(ids, seqs):
        _check_fetched(seq, label, fasta)
    check_letters(seqs, ids, source=str(fasta), iupac=iupac)
    logger.info("read %d intervals of %d bp from %s", len(seqs), length, fasta)
    return ids, one_hot(seqs)


def _sample_rows(rows: list, n: int | None, seed: int, bed) -> list:
    """``n`` of the BED rows drawn without replacement with ``seed``, in file order (all for None)."""
    if n is None:
        return rows
    if int(n) != n or n < 1:
        raise DeepMRInputError(f"n must be a positive integer, got {n!r}")
    if n > len(rows):
        raise DeepMRInputError(
            f"n={n} exceeds the {len(rows)} intervals in {bed}; pass n <= {len(rows)}"
        )
    pick = np.sort(np.random.default_rng(seed).choice(len(rows), size=int(n), replace=False))
    return [rows[i] for i in pick]


def read_fasta(
    path: str | os.PathLike, length: int | None = None, *, iupac: str = "refuse"
) -> tuple[list[str], np.ndarray]:
    """Read a FASTA of sequences (one record per reference sequence).

    Parameters
    ----------
    path : path
        FASTA file (may be gzipped).
    length : int, optional
        Resize every sequence to this length around its centre: longer ones are cropped, shorter ones
        padded with N (all-zero columns) on both sides (:func:`resize_center` of ``(0, len)``). Default: keep
        the lengths, which must then all be equal.
    iupac : {"refuse", "n"}
        Letters other than A, C, G, T, N: refuse, or read them as N (see :func:`read_fasta_bed`).

    Returns
    -------
    ids : list of str
        Record names.
    onehot : numpy.ndarray, shape (n, L, 4), float32
    """
    import pysam

    ids, seqs = [], []
    with pysam.FastxFile(str(path)) as fh:
        for rec in fh:
            ids.append(rec.name)
            seqs.append(rec.sequence or "")
    if not seqs:
        raise DeepMRInputError(f"{path} holds no FASTA records")
    check_letters(seqs, ids, source=str(path), iupac=iupac)
    if length is not None:
        resized = []
        for s in seqs:
            lo, _ = resize_center(0, len(s), length)
            if lo >= 0:
                resized.append(s[lo : lo + length])
            else:
                resized.append("N" * (-lo) + s + "N" * (length - len(s) + lo))
        seqs = resized
    elif len({len(s) for s in seqs}) != 1:
        raise DeepMRInputError(
            f"records in {path} have different lengths; pass length= to resize them"
        )
    return ids, one_hot(seqs)


IUPAC_OPTIONS = ("refuse", "n")
DUPLICATE_OPTIONS = ("drop", "keep")
_DNA_LETTERS = frozenset("ACGTNacgtn")


def check_letters(
    seqs: Sequence[str], ids: Sequence[str], *, source: str, iupac: str = "refuse"
) -> None:
    """Refuse sequences with letters other than A, C, G, T and N (unless ``iupac="n"``).

    Parameters
    ----------
    seqs : sequence of str
    ids : sequence of str
        Their names, for the message.
    source : str
        The file they came from, for the message.
    iupac : {"refuse", "n"}
        ``"n"`` accepts every letter (anything but ACGT is read as N by :func:`one_hot`).
    """
    if iupac not in IUPAC_OPTIONS:
        raise DeepMRInputError(f"unknown iupac option {iupac!r}; choose from refuse, n")
    if iupac == "n":
        return
    for name, seq in zip(ids, seqs):
        bad = set(seq) - _DNA_LETTERS
        if bad:
            shown = ", ".join(repr(c) for c in sorted(bad)[:6])
            raise DeepMRInputError(
                f"{source}: sequence {name} holds letters other than A, C, G, T, N ({shown}); "
                "fix the file, or read them as N with --iupac n"
            )


def _check_fetched(seq: str, label: str, fasta) -> None:
    """A stale index makes pysam return line breaks or headers inside a sequence."""
    if any(c in seq for c in "\n\r>"):
        raise DeepMRInputError(
            f"{fasta}: interval {label} reads across a line break or record header, so the "
            f".fai index does not describe this file; delete {fasta}.fai and run again"
        )


def _index_is_current(fasta: Path, fai: Path) -> bool:
    """Whether ``fai`` is no older than ``fasta`` and its records fit inside the file."""
    if fai.stat().st_mtime < fasta.stat().st_mtime:
        return False
    size = fasta.stat().st_size
    try:
        with open(fai) as fh:
            for line in fh:
                f = line.split("\t")
                length, offset, line_bases, line_width = (int(x) for x in f[1:5])
                full, rest = divmod(length, line_bases)
                if offset + full * line_width + rest > size:
                    return False
    except (ValueError, IndexError, ZeroDivisionError):
        return False
    return True


def fasta_index(fasta, index_dir=None) -> str:
    """Path of a current ``.fai`` index of ``fasta``, building or rebuilding one when needed.

    Parameters
    ----------
    fasta : path
        Uncompressed or bgzip-compressed FASTA.
    index_dir : path, optional
        Folder for an index that cannot be written next to the FASTA (read-only folder) or that
        replaces a stale one there (default: ``deepmr_kipoi`` under the system's temporary folder).

    Returns
    -------
    str
        The index path to pass to ``pysam.FastaFile(..., filepath_index=...)``.
    """
    import tempfile

    import pysam

    fasta = Path(fasta)
    if not fasta.is_file():
        raise FileNotFoundError(f"FASTA file not found: {fasta}; check the --fasta path")
    local = Path(str(fasta) + ".fai")
    if local.is_file() and _index_is_current(fasta, local):
        return str(local)
    writable = os.access(fasta.parent, os.W_OK) and (
        not local.exists() or os.access(local, os.W_OK)
    )
    if local.exists():
        logger.warning(
            "%s is older than %s or does not match it; rebuilding the index", local, fasta
        )
    if writable:
        target = local
    else:
        folder = Path(index_dir) if index_dir else Path(tempfile.gettempdir()) / "deepmr_kipoi"
        folder.mkdir(parents=True, exist_ok=True)
        digest = hashlib.md5(str(fasta.resolve()).encode()).hexdigest()[:12]
        target = folder / f"{fasta.name}.{digest}.fai"
        if target.is_file() and _index_is_current(fasta, target):
            return str(target)
    try:
        pysam.faidx(str(fasta), "--fai-idx", str(target))
    except pysam.utils.SamtoolsError as err:
        raise DeepMRInputError(
            f"cannot index {fasta}: {' '.join(str(err).split())[:200]}; check that it is a FASTA "
            "file (bgzip, not gzip, if compressed)"
        ) from None
    return str(target)


def _drop_duplicate_regions(rows, length: int, bed, duplicates: str):
    if duplicates not in DUPLICATE_OPTIONS:
        raise DeepMRInputError(f"unknown duplicates option {duplicates!r}; choose from drop, keep")
    seen, kept, repeats = set(), [], 0
    for row in rows:
        key = (row[0], *resize_center(row[1], row[2], length))
        if key in seen:
            repeats += 1
            if duplicates == "drop":
                continue
        seen.add(key)
        kept.append(row)
    if repeats:
        action = "analysed once" if duplicates == "drop" else "kept (--duplicates keep)"
        logger.warning(
            "%s: %d interval(s) repeat an earlier region after resizing to %d bp; %s",
            bed,
            repeats,
            length,
            action,
        )
    return kept
