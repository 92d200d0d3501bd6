"""Simulated ChIP-nexus-like data of four ES-cell factors (Oct4, Sox2, Nanog, Klf4).

Generative process (all constants in :class:`BPNetSimConfig`):

* sequences of length L over the zero-order background of :mod:`deepmr_kipoi.simulate.motifs`;
  each factor's motif (JASPAR, package data) is embedded at most once per sequence, independently
  with probability ``embed_prob`` (analysed sequences carry all four), sampled base by base from
  its frequency matrix on a random strand at a random position overlapping no other instance;
* binding probability of every window ``w`` of factor ``k`` on both strands:
  ``pi_w = sigmoid(s_w - mu_k)`` (log-odds score ``s_w``, offset ``mu_k``); occupancy
  ``q_k = 1 - prod_w (1 - pi_w)``;
* expected total reads ``lambda_k = bias_k + a_k q_k (1 + sum_j gamma_jk q_j)``: the planted
  directional cooperativity ``gamma_jk`` lets factor ``j``'s occupancy raise factor ``k``'s
  signal (and never the reverse). Defaults: Sox2 -> Oct4 2.0, Sox2 -> Nanog 1.5, Oct4 -> Nanog
  0.75; Klf4 neither gives nor takes;
* reads per strand ``Y_ks ~ Poisson(lambda_k / 2)``, placed over positions by a multinomial with
  the ChIP-nexus footprint: every bound window contributes a Gaussian bump (SD ``footprint_sd``)
  at ``centre - strand_shift`` on the + strand and ``centre + strand_shift`` on the - strand (the
  exonuclease stops on either side of the bound protein), mixed with a uniform background of
  weight ``profile_background``.

The network is trained on ``log(1 + Y_ks)`` (counts heads) and the read profiles (profile heads).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from deepmr_kipoi.simulate import motifs as _motifs

TASKS = ("Oct4", "Sox2", "Nanog", "Klf4")  # the head order of the zoo's BPNet-OSKN
MOTIF_FILES = {
    "Oct4": "POU5F1_SOX2_MA0142.1.jaspar",
    "Sox2": "SOX2_MA0143.1.jaspar",
    "Nanog": "NANOG_MA2339.1.jaspar",
    "Klf4": "KLF4_MA0039.2.jaspar",
}
COOPERATIVITY = (("Sox2", "Oct4", 2.0), ("Sox2", "Nanog", 1.5), ("Oct4", "Nanog", 0.75))


@dataclass(frozen=True)
class BPNetSimConfig:
    """Constants of the generative process.

    Attributes
    ----------
    sequence_length : int
    embed_prob : float
        Probability that a training sequence carries an instance of a given factor's motif.
    pseudocount : float
        Background mixture weight of the log-odds matrices.
    offsets : tuple of 4 float
        Binding offsets ``mu_k`` (Oct4, Sox2, Nanog, Klf4): chosen so that a random 200-bp
        sequence has median occupancy <= 0.12 while a sampled instance is mostly bound (median >= 0.9;
        Nanog's 7-bp matrix cannot separate as well: median 0.13 background, 0.48 instance).
    bias : tuple of 4 float
        Reads of an unbound sequence (both strands together).
    amplitude : tuple of 4 float
        ``a_k``: extra reads of a fully bound, unassisted site.
    cooperativity : tuple of (str, str, float)
        ``(helper j, helped k, gamma_jk)``.
    footprint_sd : float
    strand_shift : int
    profile_background : float
        Weight of the uniform part of the read-position distribution.
    """

    sequence_length: int = 200
    embed_prob: float = 0.5
    pseudocount: float = 1e-3
    offsets: tuple = (8.0, 8.0, 7.0, 7.0)
    bias: tuple = (10.0, 10.0, 10.0, 10.0)
    amplitude: tuple = (60.0, 60.0, 60.0, 60.0)
    cooperativity: tuple = field(default=COOPERATIVITY)
    footprint_sd: float = 3.0
    strand_shift: int = 6
    profile_background: float = 0.05

    def to_dict(self) -> dict:
        """Plain-dict form (JSON-serialisable)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def gamma(self) -> np.ndarray:
        """Cooperativity matrix ``G[j, k] = gamma_jk`` in :data:`TASKS` order, shape (4, 4)."""
        g = np.zeros((len(TASKS), len(TASKS)))
        for helper, helped, value in self.cooperativity:
            g[TASKS.index(helper), TASKS.index(helped)] = float(value)
        return g


def load_tf_motifs() -> dict[str, _motifs.Motif]:
    """The shipped JASPAR matrices of the four factors (see ``deepmr_kipoi/data/motifs/README.md``).

    Returns
    -------
    dict of str -> Motif
        In :data:`TASKS` order.
    """
    from importlib import resources

    out = {}
    for task in TASKS:
        ref = resources.files("deepmr_kipoi").joinpath("data", "motifs", MOTIF_FILES[task])
        with resources.as_file(ref) as path:
            out[task] = _motifs.read_jaspar(path)
    return out


@dataclass(frozen=True)
class BPNetSimulator:
    """Binding, expected reads and read profiles of the generative process.

    Attributes
    ----------
    config : BPNetSimConfig
    motifs : dict of str -> Motif
    """

    config: BPNetSimConfig
    motifs: dict

    @classmethod
    def default(cls, config: BPNetSimConfig | None = None) -> BPNetSimulator:
        """Simulator with the shipped motifs."""
        return cls(config or BPNetSimConfig(), load_tf_motifs())

    def _log_odds(self, task: str) -> np.ndarray:
        return self.motifs[task].log_odds(self.config.pseudocount)

    def window_probabilities(self, onehot: np.ndarray, task: str) -> tuple[np.ndarray, np.ndarray]:
        """Binding probability of every window, forward and reverse strand.

        Parameters
        ----------
        onehot : ndarray, shape (N, L, 4)
        task : str

        Returns
        -------
        forward, reverse : ndarray, shape (N, L - W + 1)
        """
        lo = self._log_odds(task)
        mu = self.config.offsets[TASKS.index(task)]
        fwd = _motifs.window_scores(onehot, lo) - mu
        rev = _motifs.window_scores(onehot, _motifs.reverse_complement_log_odds(lo)) - mu
        return 1.0 / (1.0 + np.exp(-fwd)), 1.0 / (1.0 + np.exp(-rev))

    def occupancy(self, onehot: np.ndarray) -> np.ndarray:
        """Occupancy ``q_k`` of every factor, shape (N, 4) in :data:`TASKS` order."""
        return np.stack(
            [
                _motifs.occupancy(onehot, self._log_odds(t), self.config.offsets[i])
                for i, t in enumerate(TASKS)
            ],
            axis=1,
        )

    def expected_reads(self, onehot: np.ndarray) -> np.ndarray:
        """Expected total reads ``lambda_k`` (both strands), shape (N, 4).

        Parameters
        ----------
        onehot : ndarray, shape (N, L, 4)

        Returns
        -------
        ndarray, shape (N, 4)
        """
        q = self.occupancy(onehot)
        boost = 1.0 + q @ self.config.gamma()
        return np.asarray(self.config.bias) + np.asarray(self.config.amplitude) * q * boost

    def profile_probabilities(self, onehot: np.ndarray) -> np.ndarray:
        """Read-position distribution per factor and strand, shape (N, 4, L, 2) (sums to 1 over L)."""
        x = np.asarray(onehot)
        n, length = x.shape[:2]
        pos = np.arange(length)
        cfg = self.config
        out = np.empty((n, len(TASKS), length, 2))
        for k, task in enumerate(TASKS):
            fwd, rev = self.window_probabilities(x, task)
            width = self.motifs[task].length
            pi = fwd + rev  # both orientations of a window bind the same footprint
            centres = np.arange(pi.shape[1]) + (width - 1) / 2.0
            for s, sign in enumerate((-1.0, 1.0)):
                peak = centres + sign * cfg.strand_shift
                kernel = np.exp(-0.5 * ((pos[None, :] - peak[:, None]) / cfg.footprint_sd) ** 2)
                kernel /= kernel.sum(axis=1, keepdims=True)
                bound = pi @ kernel  # (N, L)
                mass = bound.sum(axis=1, keepdims=True)
                shape = np.where(mass > 0, bound / np.maximum(mass, 1e-300), 1.0 / length)
                out[:, k, :, s] = (
                    cfg.profile_background / length + (1.0 - cfg.profile_background) * shape
                )
        return out


@dataclass(frozen=True)
class BPNetData:
    """Simulated sequences and reads.

    Attributes
    ----------
    onehot : ndarray of float32, shape (N, L, 4)
    counts : ndarray of int64, shape (N, 4, 2)
        Total reads per factor and strand.
    profiles : ndarray of int32, shape (N, 4, L, 2)
        Reads per position (sums to ``counts`` over L).
    motif_start : ndarray of int64, shape (N, 4)
        Start of each factor's embedded instance (-1: none).
    """

    onehot: np.ndarray
    counts: np.ndarray
    profiles: np.ndarray
    motif_start: np.ndarray


def _sample_instance(motif: _motifs.Motif, rng: np.random.Generator, background) -> np.ndarray:
    probs = motif.probabilities(0.0, background)
    codes = np.array([rng.choice(4, p=p) for p in probs])
    if rng.random() < 0.5:
        codes = 3 - codes[::-1]  # reverse complement in ACGT coding
    return codes


def simulate_sequences(
    simulator: BPNetSimulator, n: int, rng: np.random.Generator, *, all_motifs: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Sequences with embedded motif instances.

    Parameters
    ----------
    simulator : BPNetSimulator
    n : int
    rng : numpy Generator
    all_motifs : bool
        Embed every factor's motif (analysed sequences) instead of each with ``embed_prob``.

    Returns
    -------
    onehot : ndarray of float32, shape (N, L, 4)
    motif_start : ndarray of int64, shape (N, 4)
    """
    cfg = simulator.config
    length = cfg.sequence_length
    widths = [simulator.motifs[t].length for t in TASKS]
    if sum(widths) + 4 > length:
        raise ValueError(f"sequence_length {length} is too short for the four motifs")
    codes = rng.choice(4, size=(n, length), p=_motifs.BACKGROUND)
    starts = np.full((n, len(TASKS)), -1, dtype=np.int64)
    for i in range(n):
        present = (
            np.ones(len(TASKS), bool) if all_motifs else rng.random(len(TASKS)) < cfg.embed_prob
        )
        taken = np.zeros(length, bool)
        for k in rng.permutation(len(TASKS)):
            if not present[k]:
                continue
            w = widths[k]
            free = [s for s in range(length - w + 1) if not taken[s : s + w].any()]
            s = int(rng.choice(free))
            codes[i, s : s + w] = _sample_instance(
                simulator.motifs[TASKS[k]], rng, _motifs.BACKGROUND
            )
            taken[max(0, s - 2) : s + w + 2] = True
            starts[i, k] = s
    onehot = np.eye(4, dtype=np.float32)[codes]
    return onehot, starts


def simulate_data(
    simulator: BPNetSimulator, n: int, seed: int, *, all_motifs: bool = False
) -> BPNetData:
    """Sequences, Poisson totals per strand and multinomial read profiles.

    Parameters
    ----------
    simulator : BPNetSimulator
    n : int
    seed : int
    all_motifs : bool
        See :func:`simulate_sequences`.

    Returns
    -------
    BPNetData
    """
    rng = np.random.default_rng(seed)
    onehot, starts = simulate_sequences(simulator, n, rng, all_motifs=all_motifs)
    lam = simulator.expected_reads(onehot)
    counts = rng.poisson(np.repeat(lam[:, :, None] / 2.0, 2, axis=2))
    probs = simulator.profile_probabilities(onehot).transpose(0, 1, 3, 2)  # (N, 4, 2, L)
    profiles = rng.multinomial(counts, probs / probs.sum(axis=-1, keepdims=True))
    return BPNetData(
        onehot=onehot,
        counts=counts.astype(np.int64),
        profiles=profiles.transpose(0, 1, 3, 2).astype(np.int32),
        motif_start=starts,
    )
