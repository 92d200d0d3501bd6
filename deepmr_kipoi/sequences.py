"""DNA sequences as one-hot arrays: encoding in any alphabet order and layout, FASTA/BED reading.

The library's own representation is ACGT one-hot of shape ``(N, L, 4)``, float32. A position holding
N (or any other non-ACGT letter) is an all-zero column: it carries no base, is never mutated by
:func:`deepmr_kipoi.ism.saturation_effects` and is reported there. Conversion to a model's own
alphabet order (e.g. AGCT) and input layout happens only at the backend boundary
(:mod:`deepmr_kipoi.predictive`), through :func:`reorder_alphabet` and :func:`to_layout`.

Layouts (batch axis first, ``C`` the 4 base channels, ``L`` the sequence axis):

========  =================
``NLC``   ``(N, L, 4)``
``NCL``   ``(N, 4, L)``
``NC1L``  ``(N, 4, 1, L)``
``NCL1``  ``(N, 4, L, 1)``
``N1LC``  ``(N, 1, L, 4)``
``NLC1``  ``(N, L, 4, 1)`` (e.g. DeepSTARR)
========  =================
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from deepmr_kipoi.errors import DeepMRInputError

logger = logging.getLogger(__name__)

#: the library's base order; every public array in this package uses it
ALPHABET = "ACGT"

#: input layouts understood by :func:`to_layout` / :func:`from_layout`
LAYOUTS = ("NLC", "NCL", "NC1L", "NCL1", "N1LC", "NLC1")

__all__ = [
    "ALPHABET",
    "LAYOUTS",
    "check_alphabet",
    "check_onehot",
    "decode",
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


def check_alphabet(alphabet: str) -> str:
    """Validate an alphabet order: a permutation of ``"ACGT"``.

    Parameters
    ----------
    alphabet : str
        Base order of the one-hot channels, e.g. ``"ACGT"`` or ``"AGCT"`` (case-insensitive).

    Returns
    -------
    str
        The alphabet in upper case.
    """
    if not isinstance(alphabet, str) or sorted(alphabet.upper()) != sorted(ALPHABET):
        raise DeepMRInputError(
            f"alphabet must be an order of the four bases A, C, G, T (e.g. 'ACGT' or 'AGCT'), got {alphabet!r}"
        )
    return alphabet.upper()


def check_onehot(onehot, *, name: str = "onehot") -> np.ndarray:
    """Validate a one-hot batch and return it as a C-contiguous float32 array.

    Parameters
    ----------
    onehot : array_like, shape (N, L, 4)
        One-hot sequences; each column is a unit vector or all zero (an N base).
    name : str
        Name used in error messages.

    Returns
    -------
    numpy.ndarray, shape (N, L, 4), float32
    """
    x = np.asarray(onehot)
    if x.ndim == 2 and x.shape[-1] == 4:
        raise DeepMRInputError(f"{name} has shape {x.shape}: add a batch axis, e.g. {name}[None]")
    if x.ndim != 3 or x.shape[-1] != 4:
        raise DeepMRInputError(
            f"{name} must have shape (N, L, 4) in ACGT order, got {x.shape}; use sequences.from_layout to convert"
        )
    x = np.ascontiguousarray(x, dtype=np.float32)
    colsum = x.sum(-1)
    if not (np.all((x == 0) | (x == 1)) and np.all((colsum == 0) | (colsum == 1))):
        raise DeepMRInputError(
            f"{name} is not a hard one-hot encoding: every column must be one 1 and three 0s, or all 0 for N"
        )
    return x


def one_hot(seqs: str | Sequence[str], alphabet: str = ALPHABET, dtype=np.float32) -> np.ndarray:
    """One-hot encode DNA strings.

    Parameters
    ----------
    seqs : str or sequence of str
        Sequences of equal length. Case is ignored; any letter other than A, C, G, T (N, IUPAC codes)
        becomes an all-zero column.
    alphabet : str
        Channel order of the result (default ``"ACGT"``).
    dtype : numpy dtype
        Result dtype (default float32).

    Returns
    -------
    numpy.ndarray, shape (N, L, 4)
        ``N = len(seqs)`` (1 for a single string).
    """
    alphabet = check_alphabet(alphabet)
    if isinstance(seqs, str | bytes):
        seqs = [seqs]
    seqs = [s.decode() if isinstance(s, bytes) else str(s) for s in seqs]
    if not seqs:
        return np.zeros((0, 0, 4), dtype=dtype)
    lengths = {len(s) for s in seqs}
    if len(lengths) != 1:
        raise DeepMRInputError(
            f"sequences have different lengths {sorted(lengths)[:5]}; resize them first (sequences.resize_center)"
        )
    table = np.full(256, 4, dtype=np.uint8)
    for code, base in enumerate(alphabet):
        table[ord(base)] = code
        table[ord(base.lower())] = code
    try:
        raw = np.frombuffer("".join(seqs).encode("ascii"), dtype=np.uint8)
    except UnicodeEncodeError as err:
        raise DeepMRInputError("sequences contain non-ASCII characters; pass DNA letters only") from err
    codes = table[raw].reshape(len(seqs), -1)
    # row 4 of the identity-plus-zero table is the all-zero N column
    eye = np.concatenate([np.eye(4, dtype=dtype), np.zeros((1, 4), dtype=dtype)])
    return eye[codes]


def decode(onehot, alphabet: str = ALPHABET) -> list[str]:
    """Turn one-hot sequences back into strings.

    Parameters
    ----------
    onehot : array_like, shape (N, L, 4) or (L, 4)
        One-hot sequences in ``alphabet`` order; all-zero columns decode to ``"N"``.
    alphabet : str
        Channel order of ``onehot``.

    Returns
    -------
    list of str
        N strings of length L.
    """
    alphabet = check_alphabet(alphabet)
    x = np.asarray(onehot)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[-1] != 4:
        raise DeepMRInputError(f"onehot must have shape (N, L, 4), got {x.shape}")
    letters = np.frombuffer((alphabet + "N").encode(), dtype=np.uint8)
    codes = np.where(x.max(-1) > 0, x.argmax(-1), 4)
    return [letters[row].tobytes().decode() for row in codes]


def is_n(onehot) -> np.ndarray:
    """Mask of N positions (all-zero columns).

    Parameters
    ----------
    onehot : array_like, shape (N, L, 4)

    Returns
    -------
    numpy.ndarray, shape (N, L), bool
    """
    return ~np.asarray(onehot).any(axis=-1)


def reorder_alphabet(onehot, src: str, dst: str) -> np.ndarray:
    """Permute the base channels of a one-hot array from one alphabet order to another.

    Parameters
    ----------
    onehot : array_like, shape (..., 4)
        Channels last, in ``src`` order.
    src, dst : str
        Alphabet orders, e.g. ``"ACGT"`` and ``"AGCT"``.

    Returns
    -------
    numpy.ndarray, shape (..., 4)
        Channels in ``dst`` order (the input itself when the orders agree).
    """
    src, dst = check_alphabet(src), check_alphabet(dst)
    x = np.asarray(onehot)
    if src == dst:
        return x
    return x[..., [src.index(b) for b in dst]]


def _check_layout(layout: str) -> str:
    if layout not in LAYOUTS:
        raise DeepMRInputError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    return layout


def to_layout(onehot, layout: str) -> np.ndarray:
    """Reshape ``(N, L, 4)`` one-hot arrays into a model's input layout.

    Parameters
    ----------
    onehot : array_like, shape (N, L, 4)
    layout : {"NLC", "NCL", "NC1L", "NCL1", "N1LC", "NLC1"}
        Target layout (see the module docstring).

    Returns
    -------
    numpy.ndarray
        A view where possible: ``(N, L, 4)``, ``(N, 4, L)``, ``(N, 4, 1, L)``, ``(N, 4, L, 1)``,
        ``(N, 1, L, 4)`` or ``(N, L, 4, 1)``.
    """
    layout = _check_layout(layout)
    x = np.asarray(onehot)
    if x.ndim != 3 or x.shape[-1] != 4:
        raise DeepMRInputError(f"onehot must have shape (N, L, 4), got {x.shape}")
    if layout == "NLC":
        return x
    if layout == "N1LC":
        return x[:, None]
    if layout == "NLC1":
        return x[..., None]
    xt = x.transpose(0, 2, 1)
    if layout == "NCL":
        return xt
    if layout == "NC1L":
        return xt[:, :, None, :]
    return xt[..., None]


def from_layout(x, layout: str) -> np.ndarray:
    """Inverse of :func:`to_layout`: bring a model-layout array back to ``(N, L, 4)``.

    Parameters
    ----------
    x : array_like
        Array in ``layout``.
    layout : {"NLC", "NCL", "NC1L", "NCL1", "N1LC", "NLC1"}

    Returns
    -------
    numpy.ndarray, shape (N, L, 4)
    """
    layout = _check_layout(layout)
    x = np.asarray(x)
    expected = {"NLC": 3, "NCL": 3, "NC1L": 4, "NCL1": 4, "N1LC": 4, "NLC1": 4}[layout]
    if x.ndim != expected:
        raise DeepMRInputError(f"an array in layout {layout} has {expected} axes, got shape {x.shape}")
    if layout == "NLC":
        return x
    if layout == "N1LC":
        return x[:, 0]
    if layout == "NLC1":
        return x[..., 0]
    if layout == "NC1L":
        x = x[:, :, 0, :]
    elif layout == "NCL1":
        x = x[..., 0]
    return x.transpose(0, 2, 1)


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


def random_sequences(
    n: int,
    length: int,
    probs: Sequence[float] = (0.25, 0.25, 0.25, 0.25),
    seed: int = 0,
) -> np.ndarray:
    """Draw i.i.d. random DNA sequences.

    Parameters
    ----------
    n, length : int
        Number and length of sequences.
    probs : sequence of 4 floats
        Base probabilities in ACGT order (normalised to sum 1).
    seed : int
        Seed of ``numpy.random.default_rng``.

    Returns
    -------
    numpy.ndarray, shape (n, length, 4), float32
        ACGT one-hot.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.shape != (4,) or np.any(p < 0) or not p.sum() > 0:
        raise DeepMRInputError(
            f"probs must be 4 non-negative base probabilities in ACGT order, got {probs!r}"
        )
    if int(n) != n or n < 0 or int(length) != length or length < 1:
        raise DeepMRInputError(f"n must be >= 0 and length >= 1 integers, got n={n!r}, length={length!r}")
    rng = np.random.default_rng(seed)
    codes = rng.choice(4, size=(int(n), int(length)), p=p / p.sum())
    return np.eye(4, dtype=np.float32)[codes]


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
    if n is not None:
        if int(n) != n or n < 1:
            raise DeepMRInputError(f"n must be a positive integer, got {n!r}")
        if n > len(rows):
            raise DeepMRInputError(
                f"n={n} exceeds the {len(rows)} intervals in {bed}; pass n <= {len(rows)}"
            )
        pick = np.sort(np.random.default_rng(seed).choice(len(rows), size=int(n), replace=False))
        rows = [rows[i] for i in pick]
    rows = _drop_duplicate_regions(rows, length, bed, duplicates)
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


def read_fasta(path: str | os.PathLike, length: int | None = None, *,
               iupac: str = "refuse") -> tuple[list[str], np.ndarray]:  # fmt: skip
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
        raise DeepMRInputError(f"records in {path} have different lengths; pass length= to resize them")
    return ids, one_hot(seqs)


IUPAC_OPTIONS = ("refuse", "n")
DUPLICATE_OPTIONS = ("drop", "keep")
_DNA_LETTERS = frozenset("ACGTNacgtn")


def check_letters(seqs: Sequence[str], ids: Sequence[str], *, source: str,
                  iupac: str = "refuse") -> None:  # fmt: skip
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
    writable = os.access(fasta.parent, os.W_OK) and (not local.exists() or os.access(local, os.W_OK))
    if local.exists():
        logger.warning("%s is older than %s or does not match it; rebuilding the index", local, fasta)
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
        logger.warning("%s: %d interval(s) repeat an earlier region after resizing to %d bp; %s",
                       bed, repeats, length, action)  # fmt: skip
    return kept
