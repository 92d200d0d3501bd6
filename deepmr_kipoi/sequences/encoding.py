"""DNA sequences as one-hot arrays: encoding in any alphabet order and layout.

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

from collections.abc import Sequence

import numpy as np

from deepmr_kipoi.errors import DeepMRInputError

#: the library's base order; every public array in this package uses it
ALPHABET = "ACGT"

#: input layouts understood by :func:`to_layout` / :func:`from_layout`
LAYOUTS = ("NLC", "NCL", "NC1L", "NCL1", "N1LC", "NLC1")


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
        raise DeepMRInputError(
            "sequences contain non-ASCII characters; pass DNA letters only"
        ) from err
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
        raise DeepMRInputError(
            f"an array in layout {layout} has {expected} axes, got shape {x.shape}"
        )
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
        raise DeepMRInputError(
            f"n must be >= 0 and length >= 1 integers, got n={n!r}, length={length!r}"
        )
    rng = np.random.default_rng(seed)
    codes = rng.choice(4, size=(int(n), int(length)), p=p / p.sum())
    return np.eye(4, dtype=np.float32)[codes]
