"""Stage 3, local: instruments and local MR of every (sequence, exposure, outcome, method).

The local step of a chunk (:func:`local_step`) calibrates the effect SEs, selects the instruments of
every (sequence, exposure) and runs MR of every exposure on every outcome per sequence; its result
is a :class:`LocalEstimates` of arrays of shape (n, E, O, M) (sequences, exposures, outcomes,
methods), which :func:`local_table` flattens into the rows users read.

Local estimates recomputed per sample of the model are :class:`SampleEstimates`, arrays of shape
(S, n, E, O, M): today the leave-one-member-out estimates of a deep ensemble
(:func:`leave_one_out`: every step after prediction repeated on the other S - 1 members), which the
aggregate stage turns into the jackknife variance of each global effect. Another per-sample
estimator (e.g. the local MR of each member's own effects ``d_s`` with the ensemble SEs as weights)
is one more function here returning a ``SampleEstimates`` of another ``kind``, and one more
reduction in :mod:`deepmr_kipoi.run.aggregate`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from deepmr_kipoi import instruments
from deepmr_kipoi.run.config import JACKKNIFE_METHODS, RunConfig
from deepmr_kipoi.run.effects import ChunkEffects

#: MR fields copied from ``mr.run_batched`` results into the local table (NaN where not defined).
LOCAL_FIELDS = (
    "estimate", "se", "ci_low", "ci_high", "pvalue", "q", "q_pvalue", "residual_se",
    "intercept", "intercept_se", "intercept_pvalue", "i2_gx",
)  # fmt: skip
#: Cells (sequences x exposures x outcomes) per ``mr.run_batched`` call: bounds the memory of its
#: result arrays; ``run_batched`` itself never materialises cells x instruments (matrix products for
#: IVW/Egger, chunked gathers for the sorting methods), and few large calls beat many small ones.
MR_BLOCK_CELLS = 2_000_000
#: Reason code of ``mr.REASONS`` for cells with too few instruments.
TOO_FEW = 1


@dataclass(frozen=True)
class LocalEstimates:
    """Local MR results of n sequences as arrays.

    Attributes
    ----------
    methods : tuple of str, length M
    fields : mapping of str to ndarray, shape (n, E, O, M)
        The fields of :data:`LOCAL_FIELDS` (float64, NaN where a method does not define them or the
        cell failed) plus ``n_instruments`` and ``reason`` (int64, codes of ``mr.REASONS``). Cells
        with exposure == outcome are computed like any other; :func:`local_table` drops them.
    """

    methods: tuple[str, ...]
    fields: Mapping[str, np.ndarray]

    @property
    def estimate(self) -> np.ndarray:
        """Local estimates, shape (n, E, O, M)."""
        return self.fields["estimate"]

    @property
    def se(self) -> np.ndarray:
        """Their standard errors, shape (n, E, O, M)."""
        return self.fields["se"]

    @property
    def pvalue(self) -> np.ndarray:
        """Their p-values, shape (n, E, O, M)."""
        return self.fields["pvalue"]

    @property
    def n_instruments(self) -> np.ndarray:
        """Usable instruments per cell, shape (n, E, O, M)."""
        return self.fields["n_instruments"]

    @property
    def reason(self) -> np.ndarray:
        """``mr.REASONS`` code per cell (0: ok), shape (n, E, O, M)."""
        return self.fields["reason"]


@dataclass(frozen=True)
class SampleEstimates:
    """Local estimates recomputed per sample s of the model.

    Attributes
    ----------
    kind : str
        ``"leave_one_out"``: estimate s is the local MR of the ensemble without member s.
    methods : tuple of str, length M
        The run's methods; methods not recomputed are NaN.
    estimate, se : ndarray of float64, shape (S, n, E, O, M)
        NaN where the cell's MR failed.
    """

    kind: str
    methods: tuple[str, ...]
    estimate: np.ndarray
    se: np.ndarray

    @property
    def n_samples(self) -> int:
        """S."""
        return int(self.estimate.shape[0])

    @staticmethod
    def concatenate(parts: Sequence[SampleEstimates]) -> SampleEstimates:
        """Join chunks along the sequence axis (axis 1)."""
        first = parts[0]
        return SampleEstimates(first.kind, first.methods,
                               np.concatenate([p.estimate for p in parts], axis=1),
                               np.concatenate([p.se for p in parts], axis=1))  # fmt: skip


@dataclass(frozen=True)
class LocalStep:
    """What the local step of a chunk gives.

    Attributes
    ----------
    estimates : LocalEstimates
    selection : InstrumentSelection
        Instruments, ``mask`` of shape (n, W, 3, E).
    se : ndarray of float64, shape (n, W, 3, F)
        The effect SEs MR used (calibrated where the run calibrates).
    """

    estimates: LocalEstimates
    selection: instruments.InstrumentSelection
    se: np.ndarray


def local_mr(
    mean: np.ndarray,
    se: np.ndarray,
    exposures: Sequence[int],
    outcomes: Sequence[int],
    selection: instruments.InstrumentSelection,
    methods: Sequence[str],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    min_instruments: int = 3,
    block_cells: int = MR_BLOCK_CELLS,
) -> LocalEstimates:
    """Local MR of every (sequence, exposure, outcome) for each method, as array code.

    Parameters
    ----------
    mean, se : ndarray, shape (n, W, 3, F)
        Paired ISM effects and (calibrated) SEs.
    exposures, outcomes : sequence of int
        Feature indices, lengths E and O.
    selection : InstrumentSelection
        Instruments with ``mask`` of shape (n, W, 3, E). The mask varies along the exposure side
        only, which keeps IVW/Egger on ``mr.run_batched``'s matrix-product path; instruments whose
        outcome effect or SE is unusable (non-finite, SE 0) are dropped per cell
        (``drop_invalid=True``).
    methods : sequence of str, length M
        Names in ``mr.METHODS``.
    n_boot, seed, level
        Passed to ``mr.run_batched``; each exposure block gets its own seed derived from ``seed``.
    min_instruments : int
        Cells with fewer usable instruments (after dropping unusable outcome effects) are NaN with
        reason "too few instruments", on top of each method's own minimum.
    block_cells : int
        Bound on n x E_block x O cells per ``mr.run_batched`` call.

    Returns
    -------
    LocalEstimates
        Arrays of shape (n, E, O, M).
    """
    from deepmr_kipoi import mr

    n = mean.shape[0]
    m = mean.shape[1] * 3
    ex, oc = list(exposures), list(outcomes)
    n_e, n_o, n_m = len(ex), len(oc), len(methods)

    def flat(a, idx):  # (n, W, 3, F) -> (n, k, M)
        return np.ascontiguousarray(a[..., idx].reshape(n, m, len(idx)).transpose(0, 2, 1))

    bx, sx = flat(mean, ex), flat(se, ex)
    by, sy = flat(mean, oc), flat(se, oc)
    mask_x = selection.mask.reshape(n, m, n_e).transpose(0, 2, 1)

    block = max(1, int(block_cells) // max(1, n * n_o))
    fields = {f: np.full((n, n_e, n_o, n_m), np.nan) for f in LOCAL_FIELDS}
    fields["n_instruments"] = np.zeros((n, n_e, n_o, n_m), dtype=np.int64)
    fields["reason"] = np.zeros((n, n_e, n_o, n_m), dtype=np.int64)
    seeds = np.random.SeedSequence(int(seed)).generate_state(n_m * n_e + 1)
    for mi, method in enumerate(methods):
        for start in range(0, n_e, block):
            sl = slice(start, min(n_e, start + block))
            r = mr.run_batched(
                method,
                bx[:, sl, None, :],
                by[:, None, :, :],
                sx[:, sl, None, :],
                sy[:, None, :, :],
                mask=mask_x[:, sl, None, :],
                drop_invalid=True,
                n_boot=n_boot,
                seed=int(seeds[mi * n_e + start]),
                level=level,
            )
            for f in LOCAL_FIELDS:
                value = getattr(r, f, None)
                if value is not None:
                    target = fields[f][:, sl, :, mi]
                    target[...] = np.broadcast_to(value, target.shape)
            fields["n_instruments"][:, sl, :, mi] = r.n_instruments
            fields["reason"][:, sl, :, mi] = r.reason
    few = (fields["reason"] == 0) & (fields["n_instruments"] < int(min_instruments))
    for f in LOCAL_FIELDS:
        fields[f][few] = np.nan
    fields["reason"][few] = TOO_FEW
    return LocalEstimates(tuple(methods), fields)


def chunk_seed(seed: int, chunk: int) -> int:
    """The bootstrap seed of chunk ``chunk`` of a run seeded ``seed``."""
    return int(np.random.SeedSequence([int(seed), int(chunk)]).generate_state(1)[0])


def local_step(
    mean: np.ndarray,
    se: np.ndarray,
    exposures: Sequence[int],
    outcomes: Sequence[int],
    config: RunConfig,
    *,
    chunk: int = 0,
    se_scale: np.ndarray | None = None,
    methods: Sequence[str] | None = None,
) -> LocalStep:
    """Calibration, instrument selection and local MR of a chunk's effects.

    Parameters
    ----------
    mean, se : ndarray, shape (n, W, 3, F)
        Effect means and raw SDs over the model's samples.
    exposures, outcomes : sequence of int
        Feature indices, lengths E and O.
    config : RunConfig
        Instrument (``z``, ``instrument_rule``, ``one_per_position``, ``min_instruments``) and MR
        (``methods``, ``n_boot``, ``level``, ``seed``) settings.
    chunk : int
        Chunk index (the bootstrap seed is derived from ``config.seed`` and it).
    se_scale : ndarray, shape (F,), optional
        Calibration factor on the SEs.
    methods : sequence of str, optional
        Methods to run instead of ``config.methods``.

    Returns
    -------
    LocalStep
    """
    se = np.asarray(se, dtype=np.float64)
    if se_scale is not None:
        se = se * se_scale
    sel = instruments.select(mean[..., exposures], se[..., exposures], z=config.z,
                             rule=config.instrument_rule, one_per_position=config.one_per_position,
                             min_count=config.min_instruments)  # fmt: skip
    est = local_mr(mean, se, exposures, outcomes, sel, methods or config.methods,
                   n_boot=config.n_boot, seed=chunk_seed(config.seed, chunk), level=config.level,
                   min_instruments=config.min_instruments)  # fmt: skip
    return LocalStep(est, sel, se)


def leave_one_out(
    effects: ChunkEffects,
    exposures: Sequence[int],
    outcomes: Sequence[int],
    config: RunConfig,
    *,
    chunk: int = 0,
    se_scale: np.ndarray | None = None,
) -> SampleEstimates:
    """Local MR without each member of a deep ensemble in turn.

    Every step after prediction is repeated on the other S - 1 members: their effect mean and SD,
    calibration, instrument selection, local MR. Only methods of ``JACKKNIFE_METHODS`` (analytic
    SEs) are recomputed; the others, and cells whose MR failed, are NaN.

    Parameters
    ----------
    effects : ChunkEffects
        With ``samples`` (S, n, W, 3, F).
    exposures, outcomes : sequence of int
        Lengths E and O.
    config : RunConfig
    chunk : int
    se_scale : ndarray, shape (F,), optional

    Returns
    -------
    SampleEstimates
        ``kind="leave_one_out"``, arrays (S, n, E, O, M) over ``config.methods``.
    """
    methods = tuple(config.methods)
    picked = [i for i, m in enumerate(methods) if m in JACKKNIFE_METHODS]
    n_s, n = effects.samples.shape[:2]
    shape = (n_s, n, len(exposures), len(outcomes), len(methods))
    estimate, se = np.full(shape, np.nan), np.full(shape, np.nan)
    for s in range(n_s):
        mean_s, sd_s = effects.leave_one_out(s)
        est = local_step(mean_s, sd_s, exposures, outcomes, config, chunk=chunk, se_scale=se_scale,
                         methods=[methods[i] for i in picked]).estimates  # fmt: skip
        good = est.reason == 0
        estimate[s][..., picked] = np.where(good, est.estimate, np.nan)
        se[s][..., picked] = np.where(good, est.se, np.nan)
    return SampleEstimates("leave_one_out", methods, estimate, se)


def local_table(
    est: LocalEstimates,
    seq_index: np.ndarray,
    all_ids: Sequence[str],
    exposures: Sequence[int],
    outcomes: Sequence[int],
    feature_names: Sequence[str],
) -> pd.DataFrame:
    """Local MR arrays (n, E, O, M) as rows, one per (sequence, exposure, outcome, method).

    Parameters
    ----------
    est : LocalEstimates
    seq_index : ndarray of int, shape (n,)
        Indices of the chunk's sequences among all the run's.
    all_ids : sequence of str
        Every sequence's id.
    exposures, outcomes : sequence of int
    feature_names : sequence of str

    Returns
    -------
    DataFrame
        Rows method by method, then sequence, exposure, outcome; cells with exposure == outcome
        left out. Names are categoricals (tables of 10^7 rows stay small).
    """
    methods = list(est.methods)
    n, n_e, n_o = len(seq_index), len(exposures), len(outcomes)
    si, ei, oi = np.meshgrid(np.arange(n), np.arange(n_e), np.arange(n_o), indexing="ij")
    e_feat = np.asarray(exposures)[ei.ravel()]
    o_feat = np.asarray(outcomes)[oi.ravel()]
    keep = e_feat != o_feat
    cats = pd.CategoricalDtype(list(feature_names))
    # ids may repeat (FASTA records of one name): categories are the distinct ids
    distinct = list(dict.fromkeys(all_ids))
    code_of = {name: i for i, name in enumerate(distinct)}
    id_codes = np.array([code_of[all_ids[g]] for g in seq_index])[si.ravel()][keep]
    id_dtype = pd.CategoricalDtype(distinct)
    frames = []
    for mi, method in enumerate(methods):
        frame = {
            "sequence_index": seq_index[si.ravel()][keep].astype(np.int64),
            "sequence_id": pd.Categorical.from_codes(id_codes, dtype=id_dtype),
            "exposure": pd.Categorical.from_codes(e_feat[keep], dtype=cats),
            "outcome": pd.Categorical.from_codes(o_feat[keep], dtype=cats),
            "method": pd.Categorical([method] * int(keep.sum()), categories=methods),
        }
        for f in (*LOCAL_FIELDS, "n_instruments", "reason"):
            frame[f] = est.fields[f][..., mi].ravel()[keep]
        frames.append(pd.DataFrame(frame))
    return pd.concat(frames, ignore_index=True)
