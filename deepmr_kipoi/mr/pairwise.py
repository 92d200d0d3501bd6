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
``O(E O K)`` memory traffic per factor instead of a GEMM: 11x slower at 120 features, 35x at 919
(``benchmarks/bench_scale.py --pair-mask`` measures it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.mr import _common as C
from deepmr_kipoi.mr._results import BATCH_FLOAT_FIELDS, MRBatchResult
from deepmr_kipoi.mr.batched import closed_form_stats
from deepmr_kipoi.validation import choice
from deepmr_kipoi.validation import level as check_level

logger = logging.getLogger(__name__)

#: Methods of :func:`all_pairs`.
PAIR_METHODS = ("ivw", "ivw_fe", "egger")
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
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(a) | (a <= 0) if positive else ~np.isfinite(a)
    if bad.any():
        what = "finite and positive" if positive else "finite"
        raise DeepMRInputError(
            f"{name} must be {what} everywhere ({int(bad.sum())} entries are not); drop those "
            "instruments or use mr.run_batched(..., drop_invalid=True)"
        )


def _plain_sums(bxs, sx, bys, sy, m, egger, diag):
    """Sums of all pairs of one sequence, exposure-side mask only: yields one dict per sample."""
    w = 1.0 / (sy * sy)
    shared = {}
    if egger:
        shared["sw"] = m @ w.T
    if diag:
        inv_vx = m / (sx * sx)
        shared["sv"] = inv_vx @ (sy * sy).T
    n_x = m.sum(axis=1)
    e = m.shape[0]
    for s in range(bxs.shape[0]):
        b, by = bxs[s], bys[s]
        mb = m * b
        wy = w * by
        t = dict(shared)
        if egger:
            xw = np.concatenate([mb * b, np.abs(mb)]) @ w.T
            xwy = np.concatenate([mb, m * C.sign0(b)]) @ wy.T
            t.update(sxx=xw[:e], sx=xw[e:], sxy=xwy[:e], sy=xwy[e:])
        else:
            t.update(sxx=(mb * b) @ w.T, sxy=mb @ wy.T)
        t["syy"] = m @ (wy * by).T
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


def all_pairs(
    bx,
    se_bx,
    by=None,
    se_by=None,
    mask=None,
    *,
    pair_mask=None,
    pair_scores=None,
    exposure_index=None,
    methods=PAIR_METHODS,
    output: str = "full",
    diagnostics: bool = True,
    level: float = 0.95,
) -> dict:
    """IVW (multiplicative random effects), IVW-FE and MR-Egger for all exposure x outcome pairs.

    Equal, cell by cell, to ``mr.run_batched(method, bx[..., :, None, :], by[..., None, :, :],
    se_bx[..., :, None, :], se_by[..., None, :, :], mask)`` (see the module docstring for how).

    Parameters
    ----------
    bx : array_like, shape (N, E, K) or (S, N, E, K)
        Effects of K instruments on E exposures in N sequences, optionally per model sample S.
    se_bx : array_like, shape (N, E, K)
        Their standard errors (shared by all samples), finite and positive.
    by, se_by : array_like, shape (N, O, K) or (S, N, O, K), and (N, O, K), optional
        Outcome-side effects (with the same sample axis as ``bx``) and SEs. Default: ``bx`` and
        ``se_bx``, i.e. all ordered pairs of the same features.
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
        Default: ``arange(E)`` when ``by`` is not given, no exclusion otherwise. Use -1 for an
        exposure that is not among the outcomes.
    methods : sequence of {"ivw", "ivw_fe", "egger"}
    output : {"full", "estimates"}
        ``"full"``: :class:`MRBatchResult` per method (intervals and p-values included);
        ``"estimates"``: :class:`PairEstimates` (estimate, SE, counts, reasons only; faster).
    diagnostics : bool
        Compute MR-Egger's I^2_GX (two more products per sample); False leaves ``i2_gx`` NaN.
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
    level = check_level(level)
    output = choice(output, ("full", "estimates"), "output")
    methods = tuple(choice(m, PAIR_METHODS, "all_pairs method") for m in methods)
    if not methods:
        raise DeepMRInputError("methods must name at least one of ivw, ivw_fe, egger")
    same = by is None
    bx = _array(bx, "bx", (3, 4))
    sampled = bx.ndim == 4
    bxs = bx if sampled else bx[None]
    sx = _array(se_bx, "se_bx", (3,))
    bys = bxs if same else _array(by, "by", (bx.ndim,))
    bys = bys if sampled or same else bys[None]
    sy = sx if se_by is None else _array(se_by, "se_by", (3,))
    n_samples, n_seq, n_exp, k = bxs.shape
    n_out = bys.shape[2]
    if sx.shape != bxs.shape[1:] or sy.shape != bys.shape[1:] or bys.shape[:2] != bxs.shape[:2] \
            or bys.shape[3] != k:  # fmt: skip
        raise DeepMRInputError(
            f"shapes do not match: bx {bx.shape}, se_bx {sx.shape}, by {bys.shape}, se_by "
            f"{sy.shape}; give bx (S, N, E, K) or (N, E, K), se_bx (N, E, K), by (S, N, O, K) or "
            "(N, O, K), se_by (N, O, K)"
        )
    for name, a, pos in (("bx", bxs, False), ("se_bx", sx, True), ("by", bys, False),
                         ("se_by", sy, True)):  # fmt: skip
        _check_finite(name, a, pos)
    m = np.ones((n_seq, n_exp, k), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if m.shape != (n_seq, n_exp, k):
        raise DeepMRInputError(f"mask must have shape {(n_seq, n_exp, k)}, got {m.shape}")
    pm = None
    if pair_mask is not None:
        pm = np.asarray(pair_mask, dtype=bool)
        try:
            np.broadcast_shapes(pm.shape, (n_seq, n_exp, n_out, k))
        except ValueError:
            raise DeepMRInputError(
                f"pair_mask of shape {pm.shape} does not broadcast to {(n_seq, n_exp, n_out, k)}"
            ) from None
        pm = np.broadcast_to(pm, (n_seq, n_exp, n_out, k))
    scores = None
    if pair_scores is not None:
        scores = tuple(np.asarray(a, dtype=np.float64) for a in pair_scores)
        if len(scores) != 2 or scores[0].shape != (n_seq, n_exp, k) \
                or scores[1].shape != (n_seq, n_out, k):  # fmt: skip
            raise DeepMRInputError(
                f"pair_scores must be (score_x, score_y) shaped {(n_seq, n_exp, k)} and "
                f"{(n_seq, n_out, k)}"
            )
    if exposure_index is None:
        exposure_index = np.arange(n_exp) if same else np.full(n_exp, -1)
    exposure_index = np.asarray(exposure_index)
    if exposure_index.shape != (n_exp,) or not np.issubdtype(exposure_index.dtype, np.integer):
        raise DeepMRInputError(f"exposure_index must be {n_exp} integers, one per exposure")
    self_pair = exposure_index[:, None] == np.arange(n_out)[None, :]

    egger = "egger" in methods
    diag = egger and diagnostics
    lead = (n_samples, n_seq, n_exp, n_out)
    names = BATCH_FLOAT_FIELDS if output == "full" else ("estimate", "se")
    res = {meth: {f: np.full(lead, np.nan) for f in names} for meth in methods}
    counts = np.zeros((n_seq, n_exp, n_out), dtype=np.int64)
    reasons = {meth: np.zeros(lead, dtype=np.int8) for meth in methods}

    slow = pm is not None or scores is not None
    e_block = n_exp if not slow else max(1, PAIR_BLOCK_ELEMENTS // max(1, n_out * k))
    for n in range(n_seq):
        for start in range(0, n_exp, e_block):
            xs = slice(start, min(n_exp, start + e_block))
            args = (bxs[:, n, xs], sx[n, xs], bys[:, n], sy[n])
            if slow:
                p = np.broadcast_to(m[n, xs, None, :], (xs.stop - start, n_out, k))
                if pm is not None:
                    p = p & pm[n, xs]
                if scores is not None:
                    p = p & (scores[0][n, xs, None, :] > scores[1][n][None])
                sums = _pair_sums(*args, p.astype(np.float64), egger, diag)
            else:
                sums = _plain_sums(*args, m[n, xs].astype(np.float64), egger, diag)
            for s, (t, cnt) in enumerate(sums):
                cnt = np.broadcast_to(np.rint(cnt).astype(np.int64), (xs.stop - start, n_out))
                counts[n, xs] = cnt
                for meth in methods:
                    reason = np.where(self_pair[xs], np.int8(C.SELF_PAIR), np.int8(C.OK))
                    out = closed_form_stats(meth, t, cnt, reason, level,
                                            inference=output == "full")  # fmt: skip
                    bad = reason != C.OK
                    for f in names:
                        if f in out:
                            v = np.broadcast_to(out[f], bad.shape).copy()
                            v[bad] = np.nan
                            res[meth][f][s, n, xs] = v
                    reasons[meth][s, n, xs] = reason

    squeeze = (lambda a: a) if sampled else (lambda a: a[0])
    n_all = np.broadcast_to(counts, lead)
    results = {}
    for meth in methods:
        fields = {f: squeeze(v) for f, v in res[meth].items()}
        n_meth, r_meth = squeeze(np.array(n_all)), squeeze(reasons[meth])
        if output == "full":
            results[meth] = MRBatchResult(method=meth, level=level, n_instruments=n_meth,
                                          reason=r_meth, **fields)  # fmt: skip
        else:
            results[meth] = PairEstimates(method=meth, n_instruments=n_meth, reason=r_meth,
                                          **fields)  # fmt: skip
        n_bad = int(np.count_nonzero(r_meth))
        if n_bad:
            logger.info("MR all pairs %s: %d of %d cells undefined (NaN)", meth, n_bad,
                        r_meth.size)  # fmt: skip
    return results
