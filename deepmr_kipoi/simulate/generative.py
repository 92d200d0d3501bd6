"""The generative process of the simulation: sequences, motif embeddings, counts and labels.

As in the paper's code (``tf_coop_simulation.py``), with its defects fixed:

* sequences of length L over a zero-order background (A .27, C .23, G .23, T .27);
* with probability ``embed_prob`` exactly one of {exposure motif, outcome motif, both} is embedded
  (each equally likely); a pair is placed with a uniform gap between the two motifs, in random
  order; every instance is sampled base by base from the motif's frequency matrix, on a random
  strand, at a uniformly random position;
* in the sequence-confounded regimes a confounder-motif instance is inserted with probability
  ``confounder_motif_prob`` at a random position that overlaps no other embedded motif;
* occupancies ``q`` per motif (:func:`motifs.occupancy`, both strands, background in A, C, G, T
  order -- the paper's code used A, C, T, G);
* expected counts ``c_exp = exposure_bias + alpha q_exp + eta q_conf + tau1 b`` and
  ``c_out = outcome_bias + beta q_exp q_out + nu q_conf + tau2 b`` with ``b ~ Bernoulli`` the
  sequence-independent confounder; the confounder terms are exactly zero in the regimes that do not
  have them; Poisson labels; the model is trained on the Anscombe transform ``2 sqrt(y + 3/8)``;
* optionally (``bystander_gamma > 0``) a third feature, the *bystander*, with its own motif (the
  confounder motif, inserted with probability ``confounder_motif_prob`` in every regime) and no
  causal link to the other two: ``c_byst = bystander_bias + bystander_gamma q_conf``. It gives
  every round four pairs whose true effect is zero by construction (exposure/outcome -> bystander
  always; bystander -> exposure/outcome outside the sequence-confounded regimes, where the shared
  motif makes them confounded rather than null).

Two regimes test the threats Mendelian randomization exists to handle:

* ``pleiotropy``: a fourth motif, the *shared* motif (KLF4 by default), inserted with probability
  ``shared_motif_prob`` at a free position, acts directly on every feature:
  ``c_exp += shared_exposure q_sh``, ``c_out += shared_outcome q_sh``, ``c_byst += shared_bystander
  q_sh``. Its mutations move exposure and outcome in the ratio ``shared_outcome / shared_exposure``
  (3 by default), unrelated to the planted effect: they are invalid (pleiotropic) instruments of the
  planted pair. Every other ordered pair has a zero causal effect while its instruments include the
  shared motif's: the issue's scenario ``X = motif_X + shared, Y = motif_Y + shared`` with no arrow,
  four times per round (bystander <-> exposure/outcome), plus outcome -> exposure;
* ``reverse``: the outcome feeds back into the exposure and not the other way round:
  ``c_out = outcome_bias + alpha q_out`` and ``c_exp = exposure_bias + alpha q_exp +
  reverse_feedback (c_out - outcome_bias)``. The planted direction is outcome -> exposure; exposure
  -> outcome has a zero truth. The round's ``effect`` draw is not used (the feedback is the
  constant ``reverse_feedback``, 0.6 as in the issue's example).

Per round ``alpha ~ N(alpha_mean, alpha_sd)`` and ``beta = alpha * effect`` with ``effect`` from a
two-component normal mixture (clipped at 0, as the paper's code does).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from deepmr_kipoi.simulate import motifs as _motifs

REGIMES = ("none", "sequence", "random", "both", "pleiotropy", "reverse")
EMBEDDINGS = ("none", "exposure", "outcome", "both")  # codes 0..3 in SimulatedData.embedding


def regime_flags(regime: str) -> tuple[bool, bool]:
    """``(sequence_confounding, random_confounding)`` of a regime.

    Parameters
    ----------
    regime : str
        One of ``REGIMES``.

    Returns
    -------
    tuple of bool
    """
    if regime not in REGIMES:
        raise ValueError(f"unknown regime {regime!r}; use one of {', '.join(REGIMES)}")
    return regime in ("sequence", "both"), regime in ("random", "both")


def planted_pair(regime: str) -> tuple[str, str]:
    """The ordered feature pair with the planted causal effect: (cause, effect).

    ``("outcome", "exposure")`` in the reverse-causation regime, ``("exposure", "outcome")``
    elsewhere.
    """
    regime_flags(regime)
    return ("outcome", "exposure") if regime == "reverse" else ("exposure", "outcome")


@dataclass(frozen=True)
class SimulationConfig:
    """Every constant of the generative process (defaults: the paper's values).

    Attributes
    ----------
    sequence_length : int
        L.
    background : tuple of 4 float
        A, C, G, T background probabilities.
    exposure_motif, outcome_motif, confounder_motif : str
        Shipped motif short names (``motifs.SHIPPED_MOTIFS``) or JASPAR file paths.
    pseudocount : float
        Background mixture weight of the log-odds matrices (``Motif.probabilities``); the paper's
        code used 1e-5 for the data and 1e-3 for the truth -- here one value serves both.
    binding_offsets : tuple of 3 float
        Offset ``mu`` subtracted from window scores (``motifs.occupancy``) for the exposure,
        outcome and confounder motifs. With the JASPAR matrices and ``mu = 0`` a random 100-bp
        sequence already has median GATA1 occupancy 0.94 and SOX2 0.98 (a 4-bp core occurs by
        chance), which makes the exposure nearly constant; the defaults put the median background
        occupancy at about 0.05 (GATA1, SOX2) and 0.001 (TAL1) while sampled instances stay
        bound (median occupancy >= 0.94).
    embed_prob : float
        Probability that a sequence gets one of {exposure, outcome, both}.
    min_gap, max_gap : int
        Gap (bases) between the two motifs of a pair, uniform on ``[min_gap, max_gap]``;
        ``max_gap=-1`` means as large as the sequence allows.
    confounder_motif_prob : float
        Probability of inserting the confounder motif (sequence-confounded regimes).
    random_confounder_prob : float
        ``P(b = 1)`` of the sequence-independent confounder (random-confounded regimes).
    exposure_bias, outcome_bias : float
        Constant 1 of the count formulas.
    alpha_mean, alpha_sd : float
        ``alpha ~ N(alpha_mean, alpha_sd)`` per round.
    effect_high_prob, effect_high_mean, effect_low_mean, effect_sd : float
        ``effect ~ N(effect_high_mean, effect_sd)`` with probability ``effect_high_prob``, else
        ``N(effect_low_mean, effect_sd)``; clipped at 0.
    eta, nu : float
        Sequence-confounder coefficients on exposure and outcome counts.
    tau1, tau2 : float
        Random-confounder coefficients on exposure and outcome counts.
    bystander_gamma : float
        Count scale of the bystander feature; 0 (default) simulates only exposure and outcome.
    bystander_bias : float
        Constant of the bystander count formula.
    shared_motif : str
        The pleiotropy regime's shared motif (shipped short name or JASPAR path).
    shared_binding_offset : float
        Its binding offset (4: median background occupancy 0.03, sampled instances 0.998).
    shared_motif_prob : float
        Probability of inserting the shared motif (pleiotropy regime; the analysed sequences
        always carry it).
    shared_exposure, shared_outcome, shared_bystander : float
        Count effects of the shared motif on the three features (pleiotropy regime).
    reverse_feedback : float
        Coefficient of the outcome's count in the exposure's (reverse regime).
    """

    sequence_length: int = 100
    background: tuple = _motifs.BACKGROUND
    exposure_motif: str = "GATA1"
    outcome_motif: str = "TAL1"
    confounder_motif: str = "SOX2"
    pseudocount: float = 1e-4
    binding_offsets: tuple = (5.0, 2.0, 5.0)
    embed_prob: float = 0.75
    min_gap: int = 0
    max_gap: int = -1
    confounder_motif_prob: float = 0.5
    random_confounder_prob: float = 0.5
    exposure_bias: float = 1.0
    outcome_bias: float = 1.0
    alpha_mean: float = 100.0
    alpha_sd: float = 3.0
    effect_high_prob: float = 0.5
    effect_high_mean: float = 10.0
    effect_low_mean: float = 1.0
    effect_sd: float = 0.5
    eta: float = 20.0
    nu: float = 30.0
    tau1: float = 25.0
    tau2: float = 25.0
    bystander_gamma: float = 0.0
    bystander_bias: float = 1.0
    shared_motif: str = "KLF4"
    shared_binding_offset: float = 4.0
    shared_motif_prob: float = 0.5
    shared_exposure: float = 50.0
    shared_outcome: float = 150.0
    shared_bystander: float = 50.0
    reverse_feedback: float = 0.6

    def __post_init__(self):
        _motifs.check_background(self.background)
        object.__setattr__(self, "background", tuple(float(b) for b in self.background))
        if len(self.binding_offsets) != 3:
            raise ValueError("binding_offsets needs 3 values: exposure, outcome, confounder")
        object.__setattr__(self, "binding_offsets", tuple(float(v) for v in self.binding_offsets))
        for name in (
            "embed_prob",
            "confounder_motif_prob",
            "random_confounder_prob",
            "effect_high_prob",
            "shared_motif_prob",
        ):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {v}")
        if self.sequence_length < 1:
            raise ValueError(f"sequence_length must be positive, got {self.sequence_length}")
        if self.min_gap < 0:
            raise ValueError(f"min_gap must be >= 0, got {self.min_gap}")
        if self.bystander_gamma < 0:
            raise ValueError(f"bystander_gamma must be >= 0, got {self.bystander_gamma}")

    @property
    def features(self) -> tuple[str, ...]:
        """Names of the simulated features, in label order."""
        if self.bystander_gamma > 0:
            return ("exposure", "outcome", "bystander")
        return ("exposure", "outcome")

    def to_dict(self) -> dict:
        """Plain-dict form (for JSON provenance)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class MotifSet:
    """The four motifs of a config with their log-odds matrices and sampling frequencies.

    Attributes
    ----------
    exposure, outcome, confounder, shared : Motif
    log_odds : dict of str -> ndarray (W, 4)
        Keys ``"exposure"``, ``"outcome"``, ``"confounder"``, ``"shared"``.
    frequencies : dict of str -> ndarray (W, 4)
        Count frequencies (no pseudocount) that embedded instances are sampled from.
    offsets : dict of str -> float
        Binding offsets (``SimulationConfig.binding_offsets``).
    """

    exposure: _motifs.Motif
    outcome: _motifs.Motif
    confounder: _motifs.Motif
    shared: _motifs.Motif
    log_odds: dict = field(repr=False)
    frequencies: dict = field(repr=False)
    offsets: dict = field(repr=False)

    def occupancy(self, key: str, onehot: np.ndarray) -> np.ndarray:
        """Occupancy of motif ``key`` (a ``log_odds`` key), shape (N,)."""
        return _motifs.occupancy(onehot, self.log_odds[key], self.offsets[key])

    @classmethod
    def from_config(cls, config: SimulationConfig) -> MotifSet:
        """Load the config's motifs and derive their log-odds matrices."""
        ms = {
            "exposure": _motifs.load_motif(config.exposure_motif),
            "outcome": _motifs.load_motif(config.outcome_motif),
            "confounder": _motifs.load_motif(config.confounder_motif),
            "shared": _motifs.load_motif(config.shared_motif),
        }
        lo = {k: m.log_odds(config.pseudocount, config.background) for k, m in ms.items()}
        fr = {k: m.probabilities(0.0, config.background) for k, m in ms.items()}
        off = dict(zip(("exposure", "outcome", "confounder"), config.binding_offsets))
        off["shared"] = config.shared_binding_offset
        return cls(log_odds=lo, frequencies=fr, offsets=off, **ms)


@dataclass(frozen=True)
class RoundParameters:
    """True parameters of one round.

    Attributes
    ----------
    alpha : float
        Exposure count scale.
    effect : float
        ``beta / alpha``.
    beta : float
        Outcome count scale.
    high : bool
        Whether ``effect`` came from the high mixture component.
    """

    alpha: float
    effect: float
    beta: float
    high: bool


def draw_round_parameters(config: SimulationConfig, rng: np.random.Generator) -> RoundParameters:
    """Draw ``alpha``, ``effect`` and ``beta = alpha * effect`` for one round.

    Parameters
    ----------
    config : SimulationConfig
    rng : numpy.random.Generator

    Returns
    -------
    RoundParameters
    """
    high = bool(rng.random() < config.effect_high_prob)
    mean = config.effect_high_mean if high else config.effect_low_mean
    effect = max(float(rng.normal(mean, config.effect_sd)), 0.0)
    alpha = float(rng.normal(config.alpha_mean, config.alpha_sd))
    return RoundParameters(alpha=alpha, effect=effect, beta=alpha * effect, high=high)


@dataclass(frozen=True)
class SimulatedData:
    """Sequences, their embeddings and labels.

    Attributes
    ----------
    ids : ndarray of str, shape (N,)
        Unique sequence ids (estimates and truth are matched on these).
    onehot : ndarray of float32, shape (N, L, 4)
        ACGT one-hot sequences.
    embedding : ndarray of int8, shape (N,)
        Index into ``EMBEDDINGS`` (0 none, 1 exposure, 2 outcome, 3 both).
    exposure_start, outcome_start, confounder_start : ndarray of int, shape (N,)
        Start of the embedded instance, -1 where absent.
    exposure_strand, outcome_strand, confounder_strand : ndarray of int8, shape (N,)
        +1 forward, -1 reverse, 0 absent.
    q_exp, q_out, q_conf : ndarray, shape (N,)
        Motif occupancies (``q_conf`` is computed for every sequence, used only where the regime
        has sequence confounding).
    b : ndarray of int8, shape (N,)
        Sequence-independent confounder (all 0 where the regime has none).
    c_exp, c_out : ndarray, shape (N,)
        Expected (Poisson mean) counts.
    y_exp, y_out : ndarray of int, shape (N,)
        Poisson counts.
    labels : ndarray of float32, shape (N, F)
        Anscombe-transformed counts (exposure, outcome[, bystander]), the training targets.
    regime : str
    c_byst, y_byst : ndarray, shape (N,), or None
        Bystander expected and Poisson counts (None without a bystander).
    shared_start, shared_strand, q_shared : ndarray, shape (N,), or None
        The shared motif's instance (-1 / 0 where absent) and occupancy (0 outside the
        pleiotropy regime).
    """

    ids: np.ndarray
    onehot: np.ndarray
    embedding: np.ndarray
    exposure_start: np.ndarray
    outcome_start: np.ndarray
    confounder_start: np.ndarray
    exposure_strand: np.ndarray
    outcome_strand: np.ndarray
    confounder_strand: np.ndarray
    q_exp: np.ndarray
    q_out: np.ndarray
    q_conf: np.ndarray
    b: np.ndarray
    c_exp: np.ndarray
    c_out: np.ndarray
    y_exp: np.ndarray
    y_out: np.ndarray
    labels: np.ndarray
    regime: str
    c_byst: np.ndarray | None = None
    y_byst: np.ndarray | None = None
    shared_start: np.ndarray | None = None
    shared_strand: np.ndarray | None = None
    q_shared: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.ids.shape[0])


def anscombe(y):
    """Anscombe variance-stabilising transform ``2 sqrt(y + 3/8)``; same shape as ``y``."""
    return 2.0 * np.sqrt(np.asarray(y, dtype=np.float64) + 0.375)


def _instances(
    freqs: np.ndarray, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``n`` motif instances (ACGT codes, shape (n, W)) and their strands (+1/-1, (n,))."""
    cum = np.cumsum(freqs, axis=1)
    codes = (rng.random((n, freqs.shape[0]))[:, :, None] > cum[None]).sum(axis=2).clip(0, 3)
    strand = np.where(rng.random(n) < 0.5, 1, -1).astype(np.int8)
    rc = (3 - codes)[:, ::-1]  # reverse complement in ACGT codes
    return np.where(strand[:, None] > 0, codes, rc), strand


def _write(codes: np.ndarray, rows: np.ndarray, starts: np.ndarray, inst: np.ndarray) -> None:
    """codes[rows[i], starts[i] : starts[i] + W] = inst[i] for every i."""
    cols = starts[:, None] + np.arange(inst.shape[1])[None, :]
    codes[rows[:, None], cols] = inst


def simulate(
    n: int,
    params: RoundParameters,
    config: SimulationConfig,
    regime: str,
    rng: np.random.Generator,
    *,
    motif_set: MotifSet | None = None,
    embedding: str | None = None,
    id_prefix: str = "seq",
) -> SimulatedData:
    """Simulate ``n`` sequences with labels.

    Parameters
    ----------
    n : int
        Number of sequences.
    params : RoundParameters
        The round's alpha and beta.
    config : SimulationConfig
    regime : str
        One of ``REGIMES``.
    rng : numpy.random.Generator
        Source of all randomness (same generator state -> identical output).
    motif_set : MotifSet, optional
        Pre-loaded motifs (default: loaded from ``config``).
    embedding : {None, "none", "exposure", "outcome", "both"}
        Force this embedding for every sequence (e.g. ``"both"`` for the analysed sequences: the
        same as conditioning the process on it); default: the random mixture.
    id_prefix : str
        Ids are ``f"{id_prefix}{i:06d}"``.

    Returns
    -------
    SimulatedData
    """
    seq_conf, _ = regime_flags(regime)
    ms, max_gap = _checked_geometry(n, config, embedding, motif_set)
    layout = _Layout.background(n, config, ms, rng)
    emb = _embeddings(n, config, embedding, rng)
    _place_pair(layout, emb, ms, config, max_gap, rng)
    placed = ["exposure", "outcome"]
    if seq_conf or config.bystander_gamma > 0:
        _place_free_motif(layout, ms, placed, "confounder", config.confounder_motif_prob, rng)
        placed.append("confounder")
    if regime == "pleiotropy":
        _place_free_motif(layout, ms, placed, "shared", config.shared_motif_prob, rng)
    return _labelled(layout, emb, ms, params, config, regime, rng, id_prefix)


def _checked_geometry(n: int, config: SimulationConfig, embedding, motif_set):
    """The motif set and the largest gap between the pair's motifs; ValueError on bad sizes."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if embedding is not None and embedding not in EMBEDDINGS:
        raise ValueError(f"unknown embedding {embedding!r}; use one of {', '.join(EMBEDDINGS)}")
    ms = motif_set if motif_set is not None else MotifSet.from_config(config)
    L = config.sequence_length
    we, wo = ms.exposure.length, ms.outcome.length
    max_gap = L - we - wo if config.max_gap < 0 else config.max_gap
    if max_gap < config.min_gap or we + wo + config.min_gap > L:
        raise ValueError(
            f"sequence_length {L} cannot hold both motifs ({we} + {wo}) with gap in "
            f"[{config.min_gap}, {max_gap}]; increase sequence_length or lower min_gap/max_gap"
        )
    return ms, max_gap


@dataclass
class _Layout:
    """Sequences being built: ACGT codes (n, L) and every motif's start (-1: absent), strand and
    width, filled in place motif by motif."""

    codes: np.ndarray
    starts: dict
    strands: dict
    widths: dict

    @classmethod
    def background(cls, n: int, config: SimulationConfig, ms: MotifSet, rng) -> _Layout:
        """Background sequences without motifs (the first draw of the stream)."""
        codes = rng.choice(4, size=(n, config.sequence_length), p=np.asarray(config.background))
        widths = {k: getattr(ms, k).length for k in ("exposure", "outcome", "confounder", "shared")}
        return cls(
            codes=codes,
            starts={k: np.full(n, -1, dtype=np.int64) for k in widths},
            strands={k: np.zeros(n, dtype=np.int8) for k in widths},
            widths=widths,
        )


def _embeddings(n: int, config: SimulationConfig, embedding, rng) -> np.ndarray:
    """Index into ``EMBEDDINGS`` of every sequence: the forced one, or the random mixture."""
    if embedding is not None:
        return np.full(n, EMBEDDINGS.index(embedding), dtype=np.int8)
    embedded = rng.random(n) < config.embed_prob
    return np.where(embedded, 1 + rng.integers(3, size=n), 0).astype(np.int8)


def _place_pair(layout: _Layout, emb, ms: MotifSet, config: SimulationConfig, max_gap, rng):
    """Write the exposure and outcome motifs as ``emb`` says: alone at a uniform start, or both,
    in random order, ``gap`` apart (in place)."""
    n, L = layout.codes.shape
    we, wo = layout.widths["exposure"], layout.widths["outcome"]
    # Every draw is made for all n sequences, so the stream does not depend on the embeddings.
    single_e = rng.integers(L - we + 1, size=n)
    single_o = rng.integers(L - wo + 1, size=n)
    gap = rng.integers(config.min_gap, max_gap + 1, size=n)
    pair_start = np.floor(rng.random(n) * (L - (we + gap + wo) + 1)).astype(np.int64)
    exposure_first = rng.random(n) < 0.5
    layout.starts["exposure"] = np.select(
        [emb == 1, (emb == 3) & exposure_first, emb == 3],
        [single_e, pair_start, pair_start + wo + gap],
        -1,
    )
    layout.starts["outcome"] = np.select(
        [emb == 2, (emb == 3) & exposure_first, emb == 3],
        [single_o, pair_start + we + gap, pair_start],
        -1,
    )
    for key in ("exposure", "outcome"):
        inst, strand = _instances(ms.frequencies[key], n, rng)
        rows = np.flatnonzero(layout.starts[key] >= 0)
        _write(layout.codes, rows, layout.starts[key][rows], inst[rows])
        layout.strands[key][rows] = strand[rows]


def _place_free_motif(layout: _Layout, ms: MotifSet, placed, key: str, prob: float, rng) -> None:
    """Draw instances of motif ``key`` and insert them, each with probability ``prob``, where
    they overlap none of the motifs in ``placed`` (:func:`_insert_free`)."""
    n = layout.codes.shape[0]
    inst, strand = _instances(ms.frequencies[key], n, rng)
    insert = rng.random(n) < prob
    _insert_free(layout, placed, key, inst, strand, insert, rng)


def _labelled(layout: _Layout, emb, ms: MotifSet, params, config, regime, rng, id_prefix):
    """The built sequences one-hot, with their occupancies, Poisson counts and Anscombe labels."""
    n, L = layout.codes.shape
    onehot = np.zeros((n, L, 4), dtype=np.float32)
    np.put_along_axis(onehot, layout.codes[:, :, None], 1.0, axis=2)
    rand_conf = regime_flags(regime)[1]
    q_exp = ms.occupancy("exposure", onehot)
    q_out = ms.occupancy("outcome", onehot)
    q_conf = ms.occupancy("confounder", onehot)
    q_sh = ms.occupancy("shared", onehot) if regime == "pleiotropy" else np.zeros(n)
    b = (
        (rng.random(n) < config.random_confounder_prob).astype(np.int8)
        if rand_conf
        else (np.zeros(n, dtype=np.int8))
    )
    c_exp, c_out = expected_counts(q_exp, q_out, q_conf, b, params, config, regime, q_shared=q_sh)
    y_exp = rng.poisson(c_exp)
    y_out = rng.poisson(c_out)
    columns = [anscombe(y_exp), anscombe(y_out)]
    c_byst = y_byst = None
    if config.bystander_gamma > 0:
        c_byst = bystander_counts(q_conf, q_sh, config, regime)
        y_byst = rng.poisson(c_byst)
        columns.append(anscombe(y_byst))
    labels = np.stack(columns, axis=1).astype(np.float32)
    ids = np.array([f"{id_prefix}{i:06d}" for i in range(n)])
    starts, strands = layout.starts, layout.strands
    return SimulatedData(
        ids=ids,
        onehot=onehot,
        embedding=emb,
        exposure_start=starts["exposure"],
        outcome_start=starts["outcome"],
        confounder_start=starts["confounder"],
        exposure_strand=strands["exposure"],
        outcome_strand=strands["outcome"],
        confounder_strand=strands["confounder"],
        q_exp=q_exp,
        q_out=q_out,
        q_conf=q_conf,
        b=b,
        c_exp=c_exp,
        c_out=c_out,
        y_exp=y_exp,
        y_out=y_out,
        labels=labels,
        regime=regime,
        c_byst=c_byst,
        y_byst=y_byst,
        shared_start=starts["shared"],
        shared_strand=strands["shared"],
        q_shared=q_sh,
    )


def _insert_free(layout: _Layout, placed, key, inst, strand, insert, rng) -> None:
    """Write motif ``key``'s instances where ``insert``, at a uniformly random start overlapping
    none of the motifs in ``placed``; sequences without room are left without it (in place)."""
    codes, starts, widths = layout.codes, layout.starts, layout.widths
    n, L = codes.shape
    w = widths[key]
    occupied = np.zeros((n, L + 1), dtype=np.int64)
    for other in placed:
        rows = np.flatnonzero(starts[other] >= 0)
        cols = starts[other][rows, None] + np.arange(widths[other])[None, :]
        occupied[rows[:, None], cols] = 1
    cum = np.concatenate([np.zeros((n, 1), dtype=np.int64), np.cumsum(occupied, axis=1)], 1)
    n_starts = L - w + 1
    free = (cum[:, w : w + n_starts] - cum[:, :n_starts]) == 0  # (n, n_starts)
    keys = np.where(free, rng.random((n, n_starts)), -1.0)
    choice = np.argmax(keys, axis=1)  # uniform among free starts
    rows = np.flatnonzero(insert & free.any(axis=1))
    starts[key][rows] = choice[rows]
    _write(codes, rows, choice[rows], inst[rows])
    layout.strands[key][rows] = strand[rows]


def bystander_counts(q_conf, q_shared, config: SimulationConfig, regime: str) -> np.ndarray:
    """Poisson mean of the bystander: its own motif, plus the shared motif in the pleiotropy regime.

    Parameters
    ----------
    q_conf, q_shared : array_like, shape (N,)
        Occupancies of the bystander's own (confounder) motif and of the shared motif.
    config : SimulationConfig
    regime : str

    Returns
    -------
    ndarray, shape (N,)
    """
    c = config.bystander_bias + config.bystander_gamma * np.asarray(q_conf, dtype=np.float64)
    if regime == "pleiotropy":
        c = c + config.shared_bystander * np.asarray(q_shared, dtype=np.float64)
    return c


def expected_counts(
    q_exp,
    q_out,
    q_conf,
    b,
    params: RoundParameters,
    config: SimulationConfig,
    regime: str,
    q_shared=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Poisson means of the exposure and outcome counts.

    Parameters
    ----------
    q_exp, q_out, q_conf : array_like, shape (N,)
        Occupancies.
    b : array_like, shape (N,)
        Sequence-independent confounder (0/1).
    params : RoundParameters
    config : SimulationConfig
    regime : str
        One of ``REGIMES``; confounder terms are exactly zero in the regimes without them, the
        shared motif's terms outside the pleiotropy regime; the reverse regime has the outcome
        feeding into the exposure instead of the planted exposure -> outcome effect.
    q_shared : array_like, shape (N,), optional
        Occupancy of the shared motif (pleiotropy regime; default 0).

    Returns
    -------
    c_exp, c_out : ndarray, shape (N,)
    """
    seq_conf, rand_conf = regime_flags(regime)
    q_exp = np.asarray(q_exp, dtype=np.float64)
    q_out = np.asarray(q_out, dtype=np.float64)
    qc = np.asarray(q_conf, dtype=np.float64) if seq_conf else np.zeros_like(q_exp)
    bb = np.asarray(b, dtype=np.float64) if rand_conf else np.zeros_like(q_exp)
    confounding_exp = config.eta * qc + config.tau1 * bb
    confounding_out = config.nu * qc + config.tau2 * bb
    if regime == "reverse":
        driven = params.alpha * q_out
        c_out = config.outcome_bias + driven
        c_exp = config.exposure_bias + params.alpha * q_exp + config.reverse_feedback * driven
        return c_exp, c_out
    c_exp = config.exposure_bias + params.alpha * q_exp + confounding_exp
    c_out = config.outcome_bias + params.beta * q_exp * q_out + confounding_out
    if regime == "pleiotropy" and q_shared is not None:
        qs = np.asarray(q_shared, dtype=np.float64)
        c_exp = c_exp + config.shared_exposure * qs
        c_out = c_out + config.shared_outcome * qs
    return c_exp, c_out
