"""IVW, IVW-FE and MR-Egger for every exposure x outcome pair of a block of sequences, as matrix
products over the instruments.

For one sequence with instruments ``k = 1..K``, exposure-side arrays ``b_x[x, k]``, ``se_x[x, k]``
and selection mask ``M[x, k]``, and outcome-side arrays ``b_y[y, k]``, ``se_y[y, k]``, every
sufficient statistic of the three estimators is a sum over ``k`` of an exposure-side factor times an
outcome-side factor, i.e. one matrix product ``(E, K) @ (K, O)``. With ``w = 1 / se_y**2``:

==========  ==============================================  =======================================
sum         meaning                                         matrix product
==========  ==============================================  =======================================
``sxx``     ``sum M w b_x**2``                              ``(M b_x**2) @ w.T``
``sxy``     ``sum M w b_x b_y``                             ``(M b_x) @ (w b_y).T``
``syy``     ``sum M w b_y**2`` (expanded residual square)   ``M @ (w b_y**2).T``
``sw``      ``sum M w`` (Egger)                             ``M @ w.T``
``sx``      ``sum M w |b_x|`` (Egger, oriented)             ``(M |b_x|) @ w.T``
``sy``      ``sum M w sign0(b_x) b_y`` (Egger, oriented)    ``(M sign0(b_x)) @ (w b_y).T``
``sv``      ``sum M se_y**2 / se_x**2`` (I^2_GX)            ``(M / se_x**2) @ (se_y**2).T``
``svz``     ``sum M |b_x| se_y / se_x**2`` (I^2_GX)         ``(M |b_x| / se_x**2) @ se_y.T``
``svzz``    ``sum M b_x**2 / se_x**2`` (I^2_GX)             row sums
==========  ==============================================  =======================================

IVW: ``b = sxy / sxx``, ``Q = syy - b sxy``; Egger: centred sums ``cxx = sxx - sx**2 / sw`` etc.
(the closed forms of ``mr.batched``, shared with :func:`mr.run_batched`). Approximation: ``Q``
and the Egger residual sum of squares come from expanded squares, which loses about
``eps * syy / Q`` of relative precision to cancellation (see ``mr.batched``).

Model samples. Ensemble members or MC-dropout masks give each sample ``s`` its own effects
``b_x[s]``, ``b_y[s]``, analysed with the ensemble's SEs as weights and the same instruments for
every sample. The products that involve only the mask and the SEs (``sw``, ``sv``, the counts) are
computed once per sequence; each sample adds five products (``sxx``, ``sx``, ``sxy``, ``sy``,
``syy``; two more with ``diagnostics=True``).

Pair-dependent instruments. A rule such as MR Steiger filtering (instrument ``k`` counts for
``x -> y`` only where ``|b_x[x, k]| / sd_x > |b_y[y, k]| / sd_y``) gives a mask ``P[x, y, k]`` that
no longer factorises into an exposure and an outcome part, so the sums are no longer matrix
products. They are computed exactly, blocked over exposures: for a block of ``E_b`` exposures the
mask ``P`` (``E_b x O x K``) is formed once, multiplied by each outcome-side factor, and contracted
with the stacked exposure-side factors by a batched matrix-vector product. This costs
``O(E O K)`` memory traffic per factor instead of a GEMM (11x slower than the matrix products at
120 features, 35x at 919, measured when it was written). The run's local stage does not use this
path: it computes the same sums in one compiled pass (``mr.pairmask``).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import numpy as np

from deepmr_kipoi import validation
from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.mr import _common as C
from deepmr_kipoi.mr._result_types import BATCH_FLOAT_FIELDS, MRBatchResult
from deepmr_kipoi.mr.batched import closed_form_stats
from deepmr_kipoi.mr.methods import METHOD_TABLE, methods_where
from deepmr_kipoi.validation import choice

logger = logging.getLogger(__name__)

#: Methods of :func:`all_pairs`: the closed-form ones of the method table.
PAIR_METHODS = methods_where(closed_form=True)
#: Elements (exposures x outcomes x instruments) of one pair-mask block.
PAIR_BLOCK_ELEMENTS = 1 << 23


@dataclass(frozen=True, eq=False)
class PairEstimates:
    """Point estimates and SEs of one method for every cell (``output="estimates"``).

    Attributes
    ----------
    method : str
    estimate, se : ndarray of float64, shape (...)
        As :class:`MRBatchResult`; NaN where ``reason != 0``.
    n_instruments : ndarray of int64, shape (...)
    reason : ndarray of int8, shape (...)
        Code into ``mr.REASONS``.
    """

    method: str
    estimate: np.ndarray
    se: np.ndarray
    n_instruments: np.ndarray
    reason: np.ndarray

    @property
    def ok(self) -> np.ndarray:
        """Boolean array: True where the cell has a result (``reason == 0``)."""
        return self.reason == 0


def _array(a, name: str, ndims: tuple[int, ...]) -> np.ndarray:
    out = np.asarray(a, dtype=np.float64)
    if out.ndim not in ndims:
        want = " or ".join(str(d) for d in ndims)
        raise DeepMRInputError(f"{name} must have {want} dimensions, got shape {out.shape}")
    return out


def _check_finite(name: str, a: np.ndarray, positive: bool = False) -> None:
    # Read-only reductions decide: a sum is finite when every entry is (a sum that overflows
    # falls through to the exact check), and NaN propagates through min. The entries are
    # counted only for the message.
    with np.errstate(invalid="ignore", over="ignore"):
        if a.size == 0 or (np.isfinite(a.sum()) and (not positive or a.min() > 0)):
            return
        bad = ~np.isfinite(a) | (a <= 0) if positive else ~np.isfinite(a)
    if not bad.any():
        return
    what = "finite and positive" if positive else "finite"
    raise DeepMRInputError(
        f"{name} must be {what} everywhere ({int(bad.sum())} entries are not); drop those "
        "instruments or use mr.run_batched(..., drop_invalid=True)"
    )


class _Rejected(Exception):
    """A value the operand pass rejects (:meth:`_Effects.check` then names it)."""


class _Buffers:
    """Operands and products of :func:`_plain_sums`, allocated once per :func:`all_pairs` call:
    fresh arrays of this size per sequence cost as much in page faults as the operands take to
    build."""

    def __init__(self, n_exp: int, n_out: int, k: int, egger: bool):
        rows = 2 * n_exp if egger else n_exp
        self.mf, self.xw, self.xwy = np.empty((n_exp, k)), np.empty((rows, k)), np.empty((rows, k))
        self.w, self.wy, self.wyy = np.empty((n_out, k)), np.empty((n_out, k)), np.empty((n_out, k))
        self.sums, self.sums_y = np.empty((rows, n_out)), np.empty((rows, n_out))
        self.sw, self.syy = np.empty((n_exp, n_out)), np.empty((n_exp, n_out))


def _plain_sums(bxs, sx, bys, sy, m, egger, diag, buf: _Buffers):
    """Sums of all pairs of one sequence, exposure-side mask only: yields one dict per sample.

    The operands are built by ``_pairwise_kernel`` into ``buf`` (the mask and the weights with
    the first sample's), and the products that involve only the mask and the SEs (``sw``,
    ``sv``, the counts) are computed once per sequence. The arrays yielded are overwritten by the
    next call.
    """
    kernel = _kernel()
    mf, w, e = buf.mf, buf.w, m.shape[0]
    operands = (mf, buf.xw, buf.xwy, w, buf.wy, buf.wyy)
    shared = {}
    n_x = np.count_nonzero(m, axis=1)
    for s in range(bxs.shape[0]):
        b, by = bxs[s], bys[s]
        if kernel.fill_operands((b, m), (by, sy), operands, s == 0):
            raise _Rejected
        if s == 0 and egger:
            shared["sw"] = np.matmul(mf, w.T, out=buf.sw)
        if s == 0 and diag:
            inv_vx = mf / (sx * sx)
            shared["sv"] = inv_vx @ (sy * sy).T
        sums = np.matmul(buf.xw, w.T, out=buf.sums)
        sums_y = np.matmul(buf.xwy, buf.wy.T, out=buf.sums_y)
        t = dict(shared, sxx=sums[:e], sxy=sums_y[:e], syy=np.matmul(mf, buf.wyy.T, out=buf.syy))
        if egger:
            t.update(sx=sums[e:], sy=sums_y[e:])
        if diag:
            t["svz"] = (np.abs(b) * inv_vx) @ sy.T
            t["svzz"] = (b * b * inv_vx).sum(axis=1)[:, None]
        yield t, n_x[:, None]


def _pair_sums(bxs, sx, bys, sy, p, egger, diag):
    """Sums of exposure block x all outcomes with a pair mask ``p`` (E_b, O, K) float: per sample."""
    w = 1.0 / (sy * sy)
    gw = p * w[None]
    shared = {}
    if egger:
        shared["sw"] = gw.sum(axis=-1)
    if diag:
        inv_vx = 1.0 / (sx * sx)
        shared["sv"] = np.matmul(p * (sy * sy)[None], inv_vx[:, :, None])[..., 0]
        gsy = p * sy[None]
    n = p.sum(axis=-1)
    for s in range(bxs.shape[0]):
        b, by = bxs[s], bys[s]
        wy = w * by
        t = dict(shared)
        gwy = p * wy[None]
        if egger:
            xw = np.matmul(gw, np.stack([b * b, np.abs(b)], axis=-1))
            xwy = np.matmul(gwy, np.stack([b, C.sign0(b)], axis=-1))
            t.update(sxx=xw[..., 0], sx=xw[..., 1], sxy=xwy[..., 0], sy=xwy[..., 1])
        else:
            t.update(sxx=np.matmul(gw, (b * b)[:, :, None])[..., 0])
            t["sxy"] = np.matmul(gwy, b[:, :, None])[..., 0]
        t["syy"] = np.einsum("xok,ok->xo", p, wy * by)
        if diag:
            t["svz"] = np.matmul(gsy, (np.abs(b) * inv_vx)[:, :, None])[..., 0]
            t["svzz"] = np.matmul(p, (b * b * inv_vx)[:, :, None])[..., 0]
        yield t, n


@dataclass(frozen=True, eq=False)
class PairSelection:
    """Which instruments count for which exposure x outcome pair in :func:`all_pairs`.

    Attributes
    ----------
    mask : array_like of bool, shape (N, E, K), optional
        Instrument selection per exposure (the same for every outcome and sample). Default: all.
    pair_mask : array_like of bool, broadcasting to (N, E, O, K), optional
        Pair-dependent selection, combined with ``mask`` (slow path, see the module docstring).
    pair_scores : tuple of array_like, shapes (N, E, K) and (N, O, K), optional
        ``(score_x, score_y)``: instrument k counts for ``x -> y`` only where
        ``score_x[n, x, k] > score_y[n, y, k]`` (a Steiger-like rule with e.g.
        ``score_x = |b_x| / sd_x``); combined with ``mask`` and ``pair_mask`` (slow path).
    exposure_index : array_like of int, shape (E,), optional
        Outcome index of each exposure's own feature; those pairs are excluded (reason 8).
        Default: ``arange(E)`` when the outcomes are the exposures, no exclusion otherwise. Use -1
        for an exposure that is not among the outcomes.
    """

    mask: object = None
    pair_mask: object = None
    pair_scores: object = None
    exposure_index: object = None


@dataclass(frozen=True, eq=False)
class _Effects:
    """Checked inputs of :func:`all_pairs`, with a sample axis always present."""

    bxs: np.ndarray  # (S, N, E, K)
    bys: np.ndarray  # (S, N, O, K)
    sx: np.ndarray  # (N, E, K)
    sy: np.ndarray  # (N, O, K)
    sampled: bool
    same: bool

    def check(self, checked: tuple = ()) -> None:
        """Raise a one-line error for a non-finite effect or a non-finite or non-positive SE, in
        the order ``bx, se_bx, by, se_by``; arrays in ``checked`` (by identity) are skipped, as
        is an array already read under another name."""
        seen = [id(a) for a in checked]
        for name, a, positive in (
            ("bx", self.bxs, False),
            ("se_bx", self.sx, True),
            ("by", self.bys, False),
            ("se_by", self.sy, True),
        ):
            if id(a) not in seen:
                _check_finite(name, a, positive)
                seen.append(id(a))

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        """``(S, N, E, O, K)``."""
        n_samples, n_seq, n_exp, k = self.bxs.shape
        return n_samples, n_seq, n_exp, self.bys.shape[2], k


def _effects(bx, by, se_bx, se_by) -> _Effects:
    if se_bx is None:
        raise DeepMRInputError("se_bx is missing; give the standard errors of bx")
    same = by is None
    bx = _array(bx, "bx", (3, 4))
    sampled = bx.ndim == 4
    bxs = bx if sampled else bx[None]
    sx = _array(se_bx, "se_bx", (3,))
    bys = bxs if same else _array(by, "by", (bx.ndim,))
    bys = bys if sampled or same else bys[None]
    sy = sx if se_by is None else _array(se_by, "se_by", (3,))
    k = bxs.shape[3]
    if (
        sx.shape != bxs.shape[1:]
        or sy.shape != bys.shape[1:]
        or bys.shape[:2] != bxs.shape[:2]
        or bys.shape[3] != k
    ):
        raise DeepMRInputError(
            f"shapes do not match: bx {bx.shape}, se_bx {sx.shape}, by {bys.shape}, se_by "
            f"{sy.shape}; give bx (S, N, E, K) or (N, E, K), se_bx (N, E, K), by (S, N, O, K) or "
            "(N, O, K), se_by (N, O, K)"
        )
    return _Effects(bxs, bys, sx, sy, sampled, same)


@dataclass(frozen=True, eq=False)
class _Selection:
    """Checked :class:`PairSelection`: arrays of the full shapes, or None."""

    mask: np.ndarray  # (N, E, K) bool
    pair_mask: np.ndarray | None  # (N, E, O, K) bool (a broadcast view)
    scores: tuple[np.ndarray, np.ndarray] | None
    self_pair: np.ndarray  # (E, O) bool

    @property
    def slow(self) -> bool:
        """Whether a pair-dependent rule forces the blocked path."""
        return self.pair_mask is not None or self.scores is not None

    def block(self, n: int, xs: slice, n_out: int) -> np.ndarray:
        """The mask of sequence ``n`` for exposures ``xs``: bool (E_b, K), or float (E_b, O, K)
        on the slow path."""
        if not self.slow:
            return self.mask[n, xs]
        k = self.mask.shape[2]
        p = np.broadcast_to(self.mask[n, xs, None, :], (xs.stop - xs.start, n_out, k))
        if self.pair_mask is not None:
            p = p & self.pair_mask[n, xs]
        if self.scores is not None:
            p = p & (self.scores[0][n, xs, None, :] > self.scores[1][n][None])
        return p.astype(np.float64)


def _selection(selection, effects: _Effects) -> _Selection:
    if not isinstance(selection, PairSelection):
        selection = PairSelection(mask=selection)
    _, n_seq, n_exp, n_out, k = effects.shape
    m = selection.mask
    m = np.ones((n_seq, n_exp, k), dtype=bool) if m is None else np.asarray(m, dtype=bool)
    if m.shape != (n_seq, n_exp, k):
        raise DeepMRInputError(f"mask must have shape {(n_seq, n_exp, k)}, got {m.shape}")
    pm = None
    if selection.pair_mask is not None:
        pm = np.asarray(selection.pair_mask, dtype=bool)
        try:
            pm = np.broadcast_to(pm, (n_seq, n_exp, n_out, k))
        except ValueError:
            raise DeepMRInputError(
                f"pair_mask of shape {pm.shape} does not broadcast to {(n_seq, n_exp, n_out, k)}"
            ) from None
    scores = None
    if selection.pair_scores is not None:
        scores = tuple(np.asarray(a, dtype=np.float64) for a in selection.pair_scores)
        if (
            len(scores) != 2
            or scores[0].shape != (n_seq, n_exp, k)
            or scores[1].shape != (n_seq, n_out, k)
        ):
            raise DeepMRInputError(
                f"pair_scores must be (score_x, score_y) shaped {(n_seq, n_exp, k)} and "
                f"{(n_seq, n_out, k)}"
            )
    index = selection.exposure_index
    if index is None:
        index = np.arange(n_exp) if effects.same else np.full(n_exp, -1)
    index = np.asarray(index)
    if index.shape != (n_exp,) or not np.issubdtype(index.dtype, np.integer):
        raise DeepMRInputError(f"exposure_index must be {n_exp} integers, one per exposure")
    return _Selection(m, pm, scores, index[:, None] == np.arange(n_out)[None, :])


def _fill_cells(effects: _Effects, sel: _Selection, methods, names, level: float):
    """Every cell's statistics: per-method dicts of (S, N, E, O) arrays, counts, reason codes."""
    n_samples, n_seq, n_exp, n_out, k = effects.shape
    lead = (n_samples, n_seq, n_exp, n_out)
    full = "ci_low" in names
    egger = any(METHOD_TABLE[m].batched == "egger" for m in methods)
    diag = egger and full
    res = {meth: {f: np.empty(lead) for f in names} for meth in methods}  # every cell written
    counts = np.zeros((n_seq, n_exp, n_out), dtype=np.int64)
    reasons = {meth: np.zeros(lead, dtype=np.int8) for meth in methods}
    e_block = n_exp if not sel.slow else max(1, PAIR_BLOCK_ELEMENTS // max(1, n_out * k))
    if sel.slow:
        sums_of = _pair_sums
    else:
        buffers = _Buffers(n_exp, n_out, k, egger)
        sums_of = functools.partial(_plain_sums, buf=buffers)
    for n in range(n_seq):
        for start in range(0, n_exp, e_block):
            xs = slice(start, min(n_exp, start + e_block))
            args = (effects.bxs[:, n, xs], effects.sx[n, xs], effects.bys[:, n], effects.sy[n])
            for s, (t, cnt) in enumerate(sums_of(*args, sel.block(n, xs, n_out), egger, diag)):
                # Plain sums count per exposure, (E_b, 1): the closed forms broadcast it.
                cnt = np.rint(cnt).astype(np.int64)
                counts[n, xs] = cnt
                for meth in methods:
                    out, reason = _closed_cells(meth, t, cnt, sel.self_pair[xs], level, full)
                    bad = reason != C.OK
                    for f in names:
                        dst = res[meth][f][s, n, xs]
                        dst[...] = out.get(f, np.nan)
                        np.copyto(dst, np.nan, where=bad)
                    reasons[meth][s, n, xs] = reason
    return res, np.broadcast_to(counts, lead), reasons


def _closed_cells(meth, t, cnt, self_pair, level, full):
    """One method's closed forms of a block of cells and the reason codes (nonzero: no result)."""
    reason = np.where(self_pair, np.int8(C.SELF_PAIR), np.int8(C.OK))
    out = closed_form_stats(meth, t, cnt, reason, level, inference=full)
    return out, reason


def all_pairs(
    bx,
    by=None,
    se_bx=None,
    se_by=None,
    selection=None,
    *,
    methods=PAIR_METHODS,
    output: str = "full",
    level: float = 0.95,
) -> dict:
    """IVW (multiplicative random effects), IVW-FE and MR-Egger for all exposure x outcome pairs.

    Arguments in the order of :func:`mr.ivw` (``bx, by, se_bx, se_by``). Equal, cell by cell, to
    ``mr.run_batched(method, bx[..., :, None, :], by[..., None, :, :], se_bx[..., :, None, :],
    se_by[..., None, :, :], mask)`` (see the module docstring for how).

    Parameters
    ----------
    bx : array_like, shape (N, E, K) or (S, N, E, K)
        Effects of K instruments on E exposures in N sequences, optionally per model sample S.
    by : array_like, shape (N, O, K) or (S, N, O, K), optional
        Outcome-side effects (with the same sample axis as ``bx``). Default: ``bx``, i.e. all
        ordered pairs of the same features (then ``se_by`` defaults to ``se_bx``).
    se_bx : array_like, shape (N, E, K)
        Standard errors of ``bx`` (shared by all samples), finite and positive. Required.
    se_by : array_like, shape (N, O, K), optional
        Standard errors of ``by``.
    selection : PairSelection or array_like of bool, shape (N, E, K), optional
        Which instruments count for which pair; a plain boolean array is the per-exposure mask.
        Default: every instrument for every pair, self-pairs excluded when ``by`` is not given.
    methods : sequence of {"ivw", "ivw_fe", "egger"}
    output : {"full", "estimates"}
        ``"full"``: :class:`MRBatchResult` per method (intervals, p-values and MR-Egger's I^2_GX
        included); ``"estimates"``: :class:`PairEstimates` (estimate, SE, counts, reasons only;
        faster).
    level : float
        Confidence level (``output="full"``).

    Returns
    -------
    dict of str to MRBatchResult or PairEstimates
        One entry per method; arrays of shape (N, E, O), or (S, N, E, O) with a sample axis.

    Raises
    ------
    DeepMRInputError
        Shapes that do not match, non-finite effects or SEs, non-positive SEs, unknown options.
    """
    level = validation.level(level)
    output = choice(output, ("full", "estimates"), "output")
    methods = tuple(choice(m, PAIR_METHODS, "all_pairs method") for m in methods)
    if not methods:
        raise DeepMRInputError(f"methods must name at least one of {', '.join(PAIR_METHODS)}")
    effects = _effects(bx, by, se_bx, se_by)
    sel = _selection(selection, effects)
    # The plain path's operand pass reads every bx, by and se_by and counts what it rejects.
    effects.check(() if sel.slow else (effects.bxs, effects.bys, effects.sy))
    names = BATCH_FLOAT_FIELDS if output == "full" else ("estimate", "se")
    try:
        res, counts, reasons = _fill_cells(effects, sel, methods, names, level)
    except _Rejected:
        effects.check()
        raise
    return {
        meth: _result(meth, res[meth], counts, reasons[meth], output, level, effects.sampled)
        for meth in methods
    }


def _result(meth, fields, counts, reasons, output: str, level: float, sampled: bool):
    squeeze = (lambda a: a) if sampled else (lambda a: a[0])
    fields = {f: squeeze(v) for f, v in fields.items()}
    n_meth, r_meth = squeeze(np.array(counts)), squeeze(reasons)
    n_bad = int(np.count_nonzero(r_meth))
    if n_bad:
        logger.info("MR all pairs %s: %d of %d cells undefined (NaN)", meth, n_bad, r_meth.size)
    if output == "full":
        return MRBatchResult(
            method=meth, level=level, n_instruments=n_meth, reason=r_meth, **fields
        )
    return PairEstimates(method=meth, n_instruments=n_meth, reason=r_meth, **fields)


def _kernel():
    """The compiled operand builders (numba is imported only when they are first needed; it caches
    the machine code on disk, so only the first use on a machine compiles)."""
    from deepmr_kipoi.mr import _pairwise_kernel

    return _pairwise_kernel
