"""One MR method over many instrument sets at once (sequences x exposures x outcomes), as array code.

Layout: ``bx, se_bx`` (the exposure side) and ``by, se_by`` (the outcome side) are arrays shaped
``(..., K)`` that broadcast against each other and against ``mask``; every leading index of the
broadcast shape is one *cell* (one MR analysis over the instruments where ``mask`` is True).

IVW, IVW-FE and MR-Egger need only weighted sums over instruments of products ``X * Y`` where
``X`` depends on exposure-side arrays and ``Y`` on outcome-side arrays. When the mask varies only
along exposure-side axes (or only along outcome-side axes), or there is no mask, every such sum over
all cells is one batched matrix product (``(shared, E, K) @ (shared, K, O)``): for bx shaped
``(N, E, 1, K)`` and by shaped ``(N, 1, O, K)`` this costs a handful of GEMMs. Otherwise the sums
are 3-operand ``einsum`` contractions that never materialise the broadcast product. The statistics
are then closed-form functions of these sums:

* IVW: ``b = Sxy / Sxx``; ``Q = Syy - b Sxy`` (clamped at 0);
* Egger: centred sums ``Cxx = Sxx - Sx**2/Sw`` etc., slope ``Cxy / Cxx``, ``RSS = Cyy - slope Cxy``.

Approximation: computing ``Q`` and ``RSS`` from expanded sums rather than from residuals loses
about ``eps * Syy / Q`` of relative precision to cancellation (``eps`` = 2.2e-16); it is below 1e-10
unless the fit is exact to about 6 digits, in which case ``Q`` itself is near 0 (and clamped at 0).
The scalar functions compute residuals directly and are the reference for this.

Medians and the mode sort each cell's instruments: cells are gathered in chunks, their selected
instruments compacted to the front (input order kept), and sorted, cumulated and binned as whole
arrays. Bootstrap replicates are vectorised over draws and cells; the draws of cell ``c`` (its flat
C-order index in the broadcast leading shape) come from
``default_rng(SeedSequence(seed, spawn_key=(c,)))`` in the same order as the scalar functions draw
them, so ``mr.weighted_median(..., seed=np.random.SeedSequence(seed, spawn_key=(c,)))`` on that
cell's instruments reproduces the batched result (to rounding), and results do not depend on
chunking or on the other cells.

Degenerate cells get NaN and a code into :data:`REASONS` instead of an exception.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from deepmr_kipoi import validation
from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.mr import _common as C
from deepmr_kipoi.mr._result_types import BATCH_FLOAT_FIELDS, MRBatchResult
from deepmr_kipoi.mr.median import bootstrap_medians, ratio_weights, weighted_median_rows
from deepmr_kipoi.mr.methods import METHOD_TABLE
from deepmr_kipoi.mr.mode import bootstrap_modes, mode_rows, ratio_se
from deepmr_kipoi.validation import choice
from deepmr_kipoi.validation import level as check_level

logger = logging.getLogger(__name__)

#: Elements (cells x instruments) gathered per chunk by the sorting estimators.
CHUNK_ELEMENTS = 1 << 21
#: Elements (cells x replicates x instruments) per bootstrap block.
BOOT_ELEMENTS = 1 << 21


def _pad(shape: tuple[int, ...], ndim: int) -> tuple[int, ...]:
    return (1,) * (ndim - len(shape)) + tuple(shape)


class _PairSums:
    """``S(X, Y)[...] = sum_k mask * fx * fy * X * Y`` over the instrument axis, for all cells.

    ``X`` (and the validity factor ``fx``) broadcast to the exposure-side shape, ``Y`` (``fy``) to
    the outcome-side shape. The mask is folded into whichever side it does not vary against; if it
    varies along axes of both sides, it becomes a third einsum operand.
    """

    def __init__(self, lead, k, x_lead, y_lead, mask, fx, fy):
        d = len(lead)
        self.lead, self.k = tuple(lead), k
        x_lead, y_lead = _pad(x_lead, d), _pad(y_lead, d)
        self.third = None
        xfac, yfac = [fx], [fy]
        if mask is not None:
            m_lead = _pad(mask.shape[:-1], d)
            maskf = mask.astype(np.float64)
            if not any(m > 1 and x == 1 and y > 1 for m, x, y in zip(m_lead, x_lead, y_lead)):
                xfac.append(maskf)
                x_lead = np.broadcast_shapes(x_lead, m_lead)
            elif not any(m > 1 and y == 1 and x > 1 for m, x, y in zip(m_lead, x_lead, y_lead)):
                yfac.append(maskf)
                y_lead = np.broadcast_shapes(y_lead, m_lead)
            else:
                self.third = maskf
        self.xfac = self._product(xfac)
        self.yfac = self._product(yfac)
        self.x_lead, self.y_lead = x_lead, y_lead
        shared = [i for i in range(d) if x_lead[i] > 1 and y_lead[i] > 1]
        xo = [i for i in range(d) if x_lead[i] > 1 and y_lead[i] == 1]
        yo = [i for i in range(d) if y_lead[i] > 1 and x_lead[i] == 1]
        rest = [i for i in range(d) if i not in shared + xo + yo]
        self.perm = shared + xo + yo + rest
        self.sizes = (
            math.prod(lead[i] for i in shared),
            math.prod(x_lead[i] for i in xo),
            math.prod(y_lead[i] for i in yo),
        )

    @staticmethod
    def _product(factors):
        factors = [f for f in factors if f is not None]
        if not factors:
            return None
        out = factors[0]
        for f in factors[1:]:
            out = out * f
        return out

    def _side(self, a, fac, lead):
        if a is None and fac is None:
            a = np.ones((1,))
        elif a is None:
            a = fac
        elif fac is not None:
            a = a * fac
        return np.broadcast_to(np.asarray(a, dtype=np.float64), lead + (self.k,))

    def mask_x(self, a: np.ndarray) -> np.ndarray:
        """``a`` times the exposure-side factor: pass the result with ``x_masked=True``."""
        return a if self.xfac is None else a * self.xfac

    def __call__(self, x=None, y=None, *, x_masked: bool = False) -> np.ndarray:
        xa = self._side(x, None if x_masked else self.xfac, self.x_lead)
        ya = self._side(y, self.yfac, self.y_lead)
        if self.third is not None:
            return np.einsum("...k,...k,...k->...", xa, ya, self.third)
        # A side that is all ones reduces to a plain sum (and broadcast, zero-stride operands
        # would keep matmul off BLAS).
        if y is None and self.yfac is None:
            return np.broadcast_to(xa.sum(axis=-1), self.lead)
        if x is None and self.xfac is None:
            return np.broadcast_to(ya.sum(axis=-1), self.lead)
        ps, px, py = self.sizes
        axes = self.perm + [len(self.lead)]
        xr = xa.transpose(axes).reshape(ps, px, self.k)
        yr = ya.transpose(axes).reshape(ps, py, self.k)
        if px == 1 and py == 1:
            out = np.einsum("sk,sk->s", xr[:, 0], yr[:, 0])
        else:
            out = np.matmul(xr, yr.transpose(0, 2, 1))
        out = out.reshape([self.lead[i] for i in self.perm])
        return out.transpose(np.argsort(self.perm))


def _set_reason(reason: np.ndarray, cond: np.ndarray, code: int) -> None:
    reason[(reason == C.OK) & cond] = code


def _all_valid(b: np.ndarray, se: np.ndarray) -> bool:
    """Every ``b`` finite and every ``se`` finite and positive (read-only reductions; NaN
    propagates through min and max)."""
    if b.size == 0 or se.size == 0:
        return True
    with np.errstate(invalid="ignore"):
        return bool(
            np.isfinite(b.min()) and np.isfinite(b.max()) and se.min() > 0 and np.isfinite(se.max())
        )


@dataclass(frozen=True, eq=False)
class _Cells:
    """Checked inputs of :func:`run_batched`: float64 arrays broadcasting to ``lead + (k,)``."""

    bx: np.ndarray
    by: np.ndarray
    sx: np.ndarray
    sy: np.ndarray
    mask: np.ndarray | None
    lead: tuple[int, ...]
    k: int


@dataclass(frozen=True)
class _Options:
    """The options of :func:`run_batched`, checked."""

    level: float
    drop_invalid: bool
    n_boot: int = 1000
    seed: object = 0
    weights: str = "second"
    phi: float = 1.0
    progress: bool = False
    se_method: str = "bootstrap"


def _closed_form(method: str, cells: _Cells, opts: _Options):
    bx, by, sx, sy, lead, k = cells.bx, cells.by, cells.sx, cells.sy, cells.lead, cells.k
    mask, drop_invalid, level = cells.mask, opts.drop_invalid, opts.level
    all_x, all_y = _all_valid(bx, sx), _all_valid(by, sy)
    fx = fy = None
    if not (all_x and all_y):
        fin_x = np.isfinite(bx) & np.isfinite(sx)
        fin_y = np.isfinite(by) & np.isfinite(sy)
        with np.errstate(invalid="ignore"):
            vx, vy = fin_x & (sx > 0), fin_y & (sy > 0)
        # Invalid entries are zeroed so that they cannot poison the sums; they are either dropped
        # (drop_invalid) or flag their cell below.
        bx, sx = np.where(vx, bx, 0.0), np.where(vx, sx, 1.0)
        by, sy = np.where(vy, by, 0.0), np.where(vy, sy, 1.0)
        if drop_invalid:
            fx, fy = vx.astype(np.float64), vy.astype(np.float64)
    x_lead = np.broadcast_shapes(bx.shape, sx.shape)[:-1]
    y_lead = np.broadcast_shapes(by.shape, sy.shape)[:-1]
    s = _PairSums(lead, k, x_lead, y_lead, mask, fx, fy)

    n = np.rint(s()).astype(np.int64)
    reason = np.zeros(lead, dtype=np.int8)
    if not drop_invalid and not (all_x and all_y):
        nonfinite = s(~fin_x, None) + s(None, ~fin_y)
        bad_se = s(fin_x & ~vx, None) + s(None, fin_y & ~vy)
        _set_reason(reason, nonfinite > 0, C.NONFINITE)
        _set_reason(reason, bad_se > 0, C.BAD_SE)

    sy2 = sy * sy
    w = 1.0 / sy2
    wy = w * by
    bxm = s.mask_x(bx)
    t = dict(sxx=s(bxm * bx, w, x_masked=True), sxy=s(bxm, wy, x_masked=True), syy=s(None, wy * by))
    if METHOD_TABLE[method].batched == "egger":
        abxm = np.abs(bxm)
        inv_vx = 1.0 / (sx * sx)
        t.update(
            sw=s(None, w),
            sx=s(abxm, w, x_masked=True),
            sy=s(C.sign0(bx), wy),
            sv=s(inv_vx, sy2),
            svz=s(abxm * inv_vx, sy, x_masked=True),
            svzz=s(abxm * np.abs(bx) * inv_vx, None, x_masked=True),
        )
    out = closed_form_stats(method, t, n, reason, level)
    return out, n, reason


def closed_form_stats(method, t, n, reason, level, *, inference=True) -> dict:
    """IVW, IVW-FE or MR-Egger statistics from their sufficient statistics (array code).

    Parameters
    ----------
    method : {"ivw", "ivw_fe", "egger"}
    t : dict of ndarray, each broadcasting to the cell shape ``(...)``
        Sums over each cell's selected instruments, with ``w = 1 / se_y**2``: ``sxx = sum w bx**2``,
        ``sxy = sum w bx by``, ``syy = sum w by**2``; for Egger also ``sw = sum w``,
        ``sx = sum w |bx|``, ``sy = sum w sign0(bx) by`` and, for I^2_GX (optional, NaN without
        them), ``sv = sum se_y**2 / se_x**2``, ``svz = sum |bx| se_y / se_x**2``,
        ``svzz = sum bx**2 / se_x**2``.
    n : ndarray of int, shape (...)
        Selected instruments per cell.
    reason : ndarray of int8, shape (...)
        Reason codes, updated in place (too few instruments, all ``b_x`` zero, collinear, numerical).
    level : float
    inference : bool
        False: only ``estimate``, ``se``, ``q`` and ``residual_se`` are returned (no intervals,
        p-values or Egger intercept).

    Returns
    -------
    dict of ndarray
        Fields of :class:`MRBatchResult`; cells are not yet NaN-masked by ``reason``.
    """
    _set_reason(reason, n < C.MIN_INSTRUMENTS[method], C.TOO_FEW)
    # Every sum at the cells' shape: each step below then makes one fresh array of that shape and
    # finishes in place (a temporary per operation costs more in allocation than in arithmetic).
    shape = np.broadcast_shapes(reason.shape, *(np.shape(v) for v in t.values()))
    t = {name: np.broadcast_to(v, shape) for name, v in t.items()}
    sxx, sxy, syy = t["sxx"], t["sxy"], t["syy"]
    _set_reason(reason, ~(sxx > 0), C.ALL_BX_ZERO)
    with np.errstate(divide="ignore", invalid="ignore"):
        if METHOD_TABLE[method].batched == "ivw":
            out = _ivw_stats(method, sxx, sxy, syy, n)
            df = n - 1
            if inference:
                lo, hi, p = C.normal_inference(out["estimate"], out["se"], level)
                out.update(ci_low=lo, ci_high=hi, pvalue=p)
        else:
            out = _egger_stats(t, n, reason, intercept=inference)
            df = n - 2
            if inference:
                slope, se, icpt, icpt_se = (
                    out[f] for f in ("estimate", "se", "intercept", "intercept_se")
                )
                lo, hi, p = C.t_inference(slope, se, df, level)
                _, _, ip = C.t_inference(icpt, icpt_se, df, level)
                out.update(ci_low=lo, ci_high=hi, pvalue=p, intercept_pvalue=ip)
            if "sv" in t:
                # I^2_GX: z = |b_x| / se_y with weights v = (se_y / se_x)**2
                qgx = t["svzz"] - t["svz"] * t["svz"] / t["sv"]
                out["i2_gx"] = 100.0 * np.maximum(0.0, (qgx - (n - 1)) / qgx)
        if inference:
            out.update(q_df=np.asarray(df, dtype=np.float64), q_pvalue=C.chi2_sf(out["q"], df))
    _set_reason(reason, ~(np.isfinite(out["estimate"]) & np.isfinite(out["se"])), C.NUMERICAL)
    return out


def _ivw_stats(method, sxx, sxy, syy, n) -> dict:
    """IVW slope ``sxy / sxx``, Q ``max(syy - b sxy, 0)``, residual SE ``sqrt(Q / (n - 1))`` and the
    SE ``1 / sqrt(sxx)``, times ``max(1, sigma)`` for the multiplicative random-effects IVW."""
    b = sxy / sxx
    q = b * sxy
    np.subtract(syy, q, out=q)
    np.maximum(q, 0.0, out=q)
    sigma = q / (n - 1)
    np.sqrt(sigma, out=sigma)
    se = np.sqrt(sxx)
    np.divide(1.0, se, out=se)
    if method == "ivw":
        se *= np.maximum(1.0, sigma)
    return dict(estimate=b, se=se, q=q, residual_se=sigma)


def _egger_stats(t, n, reason, intercept: bool = True) -> dict:
    """MR-Egger from the centred sums ``cxx = sxx - sx**2 / sw`` (etc.): slope ``cxy / cxx``,
    intercept ``my - slope mx``, RSS ``max(cyy - slope cxy, 0)``, residual SE
    ``sigma = sqrt(RSS / (n - 2))`` and SEs ``sqrt(1 / cxx)`` and ``sqrt(1 / sw + mx**2 / cxx)``,
    both times ``max(1, sigma)`` (the intercept and its SE only with ``intercept``); ``reason``
    gets the collinear cells."""
    sw, sx, sy = t["sw"], t["sx"], t["sy"]
    mx, my = sx / sw, sy / sw
    cxx, cxy, cyy = sx * mx, sx * my, sy * my
    np.subtract(t["sxx"], cxx, out=cxx)
    np.subtract(t["sxy"], cxy, out=cxy)
    np.subtract(t["syy"], cyy, out=cyy)
    _set_reason(reason, ~(cxx > C.COLLINEAR_RTOL * t["sxx"]), C.COLLINEAR)
    slope = cxy / cxx
    q = slope * cxy
    np.subtract(cyy, q, out=q)
    np.maximum(q, 0.0, out=q)
    del cxy, cyy
    sigma = q / (n - 2)
    np.sqrt(sigma, out=sigma)
    inflate = np.maximum(1.0, sigma)
    se = np.divide(1.0, cxx)
    np.sqrt(se, out=se)
    se *= inflate
    out = dict(estimate=slope, se=se, q=q, residual_se=sigma)
    if intercept:
        icpt = slope * mx
        np.subtract(my, icpt, out=icpt)
        icpt_se = mx * mx
        icpt_se /= cxx
        np.add(np.divide(1.0, sw), icpt_se, out=icpt_se)
        np.sqrt(icpt_se, out=icpt_se)
        icpt_se *= inflate
        out.update(intercept=icpt, intercept_se=icpt_se)
    return out


#: The sums each closed-form method reads (``closed_form_stats``), for :func:`from_sums`.
SUM_NAMES = {
    "ivw": ("sxx", "sxy", "syy"),
    "ivw_fe": ("sxx", "sxy", "syy"),
    "egger": ("sxx", "sxy", "syy", "sw", "sx", "sy", "sv", "svz", "svzz"),
}


def from_sums(
    method: str, sums, n, *, level: float = 0.95, inference: bool = True
) -> MRBatchResult:
    """IVW, IVW-FE or MR-Egger results from sums over each cell's instruments (array code).

    The closed forms of :func:`run_batched` for sums computed elsewhere (e.g. under
    pair-dependent instrument masks, ``mr.pairmask.pair_sums``).

    Parameters
    ----------
    method : {"ivw", "ivw_fe", "egger"}
    sums : mapping of str to ndarray, shape (...)
        At least the sums of :data:`SUM_NAMES` for the method (defined in ``closed_form_stats``;
        Egger's ``sv, svz, svzz`` only for I^2_GX).
    n : ndarray, shape (...)
        Instruments per cell (rounded to integers).
    level : float
    inference : bool
        False: estimate, SE, Q and residual SE only (intervals and p-values NaN).

    Returns
    -------
    MRBatchResult
        As :func:`run_batched` with ``drop_invalid=True`` gives for the same instruments.
    """
    if method not in SUM_NAMES:
        raise DeepMRInputError(f"from_sums takes ivw, ivw_fe or egger, not {method!r}")
    t = {name: sums[name] for name in SUM_NAMES[method] if name in sums}
    n = np.rint(np.asarray(n)).astype(np.int64)
    reason = np.zeros(n.shape, dtype=np.int8)
    out = closed_form_stats(method, t, n, reason, check_level(level), inference=inference)
    return _batch_result(method, out, n, reason, n.shape, level, False)


def _draws(seed, cell_ids, counts, shape_fn, kmax):
    """Standard normal draws per cell, padded with zeros to ``kmax`` instruments."""
    z = np.zeros((len(cell_ids),) + shape_fn(kmax))
    for i, (cid, kc) in enumerate(zip(cell_ids, counts)):
        rng = np.random.default_rng(C.seed_sequence(seed, (int(cid),)))
        z[i, ..., :kc] = rng.standard_normal(shape_fn(int(kc)))
    return z


@dataclass(frozen=True, eq=False)
class _Compact:
    """Cells with a result, instruments moved to the first ``kmax`` slots (padding after them)."""

    bx: np.ndarray  # (R, kmax)
    by: np.ndarray
    sx: np.ndarray
    sy: np.ndarray
    ratio: np.ndarray  # by / bx, +inf in padded slots
    slot: np.ndarray  # (R, kmax) bool: a real instrument
    cell_ids: np.ndarray  # (R,) flat cell indices (the bootstrap's seeds)
    counts: np.ndarray  # (R,) instruments per cell

    @property
    def kmax(self) -> int:
        """Slots per cell."""
        return int(self.slot.shape[1])


def _chunk_reasons(method: str, group, m: np.ndarray, drop_invalid: bool):
    """Reason codes and instrument counts of a chunk of cells; ``m`` is narrowed in place."""
    gbx, gby, gsx, gsy = group
    fin = np.isfinite(gbx) & np.isfinite(gby) & np.isfinite(gsx) & np.isfinite(gsy)
    with np.errstate(invalid="ignore"):
        valid = fin & (gsx > 0) & (gsy > 0)
    if drop_invalid:
        m &= valid
    cnt = m.sum(axis=1)
    rsn = np.zeros(len(cnt), dtype=np.int8)
    if not drop_invalid:
        _set_reason(rsn, (m & ~fin).any(axis=1), C.NONFINITE)
        _set_reason(rsn, (m & fin & ~valid).any(axis=1), C.BAD_SE)
    _set_reason(rsn, cnt < C.MIN_INSTRUMENTS[method], C.TOO_FEW)
    zero = m & (gbx == 0)
    _set_reason(rsn, zero.sum(axis=1) == cnt, C.ALL_BX_ZERO)
    _set_reason(rsn, zero.any(axis=1), C.BX_ZERO)
    return rsn, cnt


def _compact(group, m: np.ndarray, ok: np.ndarray, ids: np.ndarray, cnt: np.ndarray) -> _Compact:
    gbx, gby, gsx, gsy = group
    cnt_ok = cnt[ok]
    kmax = int(cnt_ok.max())
    order = np.argsort(~m[ok], axis=1, kind="stable")[:, :kmax]
    slot = np.arange(kmax)[None, :] < cnt_ok[:, None]
    # Padding keeps the arithmetic finite; padded slots get weight 0 / ratio +inf below.
    cbx, cby, csx, csy = (
        np.where(slot, np.take_along_axis(a[ok], order, axis=1), pad)
        for a, pad in ((gbx, 1.0), (gby, 0.0), (gsx, 1.0), (gsy, 1.0))
    )
    ratio = np.where(slot, cby / cbx, np.inf)
    return _Compact(cbx, cby, csx, csy, ratio, slot, ids[ok], cnt_ok)


def _sorted_methods(method: str, cells: _Cells, opts: _Options):
    lead, k = cells.lead, cells.k
    full = tuple(lead) + (k,)
    views = [np.broadcast_to(a, full) for a in (cells.bx, cells.by, cells.sx, cells.sy)]
    mview = None if cells.mask is None else np.broadcast_to(cells.mask, full)
    n_cells = math.prod(lead)
    est = np.full(n_cells, np.nan)
    se = np.full(n_cells, np.nan)
    n_all = np.zeros(n_cells, dtype=np.int64)
    reason = np.zeros(n_cells, dtype=np.int8)
    per_chunk = max(1, CHUNK_ELEMENTS // max(k, 1))
    starts = range(0, n_cells, per_chunk)
    for start in tqdm(starts, desc=f"MR {method}", disable=not opts.progress, leave=False):
        ids = np.arange(start, min(n_cells, start + per_chunk))
        idx = np.unravel_index(ids, lead)
        group = tuple(v[idx] for v in views)
        m = np.ones(group[0].shape, dtype=bool) if mview is None else mview[idx]
        rsn, cnt = _chunk_reasons(method, group, m, opts.drop_invalid)
        n_all[ids] = cnt
        ok = rsn == C.OK
        if ok.any():
            e, s = _cells_estimate(method, _compact(group, m, ok, ids, cnt), opts)
            est[ids[ok]] = e
            se[ids[ok]] = s
            bad = ~(np.isfinite(e) & np.isfinite(s))
            rsn[np.flatnonzero(ok)[bad]] = C.NUMERICAL
        reason[ids] = rsn
    est[reason != C.OK] = np.nan
    se[reason != C.OK] = np.nan
    est, se, n_all, reason = (a.reshape(lead) for a in (est, se, n_all, reason))
    if METHOD_TABLE[method].batched == "mode":
        lo, hi, p = C.t_inference(est, se, n_all - 1, opts.level)
    else:
        lo, hi, p = C.normal_inference(est, se, opts.level)
    return dict(estimate=est, se=se, ci_low=lo, ci_high=hi, pvalue=p), n_all, reason


def _cells_estimate(method: str, c: _Compact, opts: _Options):
    """Point estimates and bootstrap SEs of compacted cells (instruments in the first slots)."""
    n_boot, seed, kmax = opts.n_boot, opts.seed, c.kmax
    per_block = max(1, BOOT_ELEMENTS // (n_boot * kmax))
    if METHOD_TABLE[method].batched == "mode":
        sr = np.where(c.slot, ratio_se(c.bx, c.by, c.sx, c.sy), 1.0)
        w = np.where(c.slot, sr**-2, 0.0)
        est, _ = mode_rows(c.ratio, w, opts.phi)
        se = np.empty(len(c.cell_ids))
        for b in range(0, len(c.cell_ids), per_block):
            sl = slice(b, b + per_block)
            z = _draws(seed, c.cell_ids[sl], c.counts[sl], lambda kc: (n_boot, kc), kmax)
            boot = bootstrap_modes(c.ratio[sl], sr[sl], w[sl], z, opts.phi)
            dev = np.abs(boot - np.median(boot, axis=1, keepdims=True))
            se[sl] = 1.4826 * np.median(dev, axis=1)
        return est, se
    kind = "simple" if method == "simple_median" else opts.weights
    w = np.where(c.slot, ratio_weights(c.bx, c.by, c.sx, c.sy, kind), 0.0)
    est = weighted_median_rows(c.ratio, w)
    if opts.se_method == "analytic":
        return est, median_analytic_se(w, np.where(c.slot, ratio_se(c.bx, c.by, c.sx, c.sy), 1.0))
    se = np.empty(len(c.cell_ids))
    for b in range(0, len(c.cell_ids), per_block):
        sl = slice(b, b + per_block)
        z = _draws(seed, c.cell_ids[sl], c.counts[sl], lambda kc: (2, n_boot, kc), kmax)
        boot = bootstrap_medians(c.bx[sl], c.by[sl], c.sx[sl], c.sy[sl], w[sl], z)
        se[sl] = np.std(boot, axis=1, ddof=1)
    return est, se


def median_analytic_se(weights: np.ndarray, ratio_se_: np.ndarray) -> np.ndarray:
    """Analytic (asymptotic) SE of the weighted median of ratio estimates, per row.

    Approximation, named: linearisation of the weighted-median estimating equation
    ``sum_j w_j (1[r_j <= m] - 1/2) = 0`` at the true effect under the model that every instrument
    is valid and homogeneous, each ratio ``r_j ~ N(theta, s_j**2)`` independently (``s_j`` the
    second-order ratio SE): the equation's variance is ``sum w_j**2 / 4`` and its slope
    ``sum w_j phi(0) / s_j``, so ``SE = sqrt(pi / 2 * sum w_j**2) / sum(w_j / s_j)`` for weights
    normalised to sum 1 (for equal ``s_j`` and weights: ``sqrt(pi / 2) s / sqrt(K)``, the classic
    median efficiency). Heterogeneity between instruments beyond their SEs is not reflected
    (the parametric bootstrap reflects it only through the spread of the observed ratios).

    Parameters
    ----------
    weights : ndarray, shape (R, k)
        Non-negative weights (0 in unused slots).
    ratio_se_ : ndarray, shape (R, k)
        Ratio SEs ``s_j`` (any positive value in unused slots).

    Returns
    -------
    ndarray, shape (R,)
    """
    wn = weights / weights.sum(axis=-1, keepdims=True)
    return np.sqrt(0.5 * np.pi * np.sum(wn * wn, axis=-1)) / np.sum(wn / ratio_se_, axis=-1)


def run_batched(
    method: str,
    bx,
    by,
    se_bx,
    se_by,
    mask=None,
    *,
    n_boot: int = 1000,
    seed=0,
    level: float = 0.95,
    weights: str = "second",
    phi: float = 1.0,
    drop_invalid: bool = False,
    progress: bool = False,
    se_method: str = "bootstrap",
) -> MRBatchResult:
    """Run one MR method over every cell of broadcast instrument arrays.

    Parameters
    ----------
    method : str
        One of ``mr.METHODS``.
    bx, se_bx : array_like, shape (..., K)
        Exposure-side effects and SEs.
    by, se_by : array_like, shape (..., K)
        Outcome-side effects and SEs; all four arrays and ``mask`` broadcast to ``(..., K)``,
        e.g. bx ``(N, E, 1, K)`` against by ``(N, 1, O, K)`` for all exposure-outcome pairs.
    mask : array_like of bool, shape (..., K), optional
        True = use this instrument in this cell (ragged instrument sets). Default: all. Entries
        outside the mask may hold anything, NaN included. A mask that varies only along
        exposure-side (or only outcome-side) axes keeps IVW / Egger on the matrix-product path.
    n_boot : int
        Bootstrap replicates (medians and mode); ignored by the closed-form methods.
    seed : int or numpy.random.SeedSequence
        Root seed of the bootstrap; cell ``c`` (flat C-order index of the leading shape) draws
        from ``SeedSequence(seed, spawn_key=(c,))``. Ignored by the closed-form methods.
    level : float
        Confidence level.
    weights : {"second", "first"}
        Weighted-median weights (see ``mr.weighted_median``).
    phi : float
        Weighted-mode bandwidth multiplier.
    drop_invalid : bool
        If True, selected instruments with a non-finite value or a non-positive SE are dropped
        from their cell instead of making the cell NaN (reason 2 or 3).
    progress : bool
        Show a progress bar over chunks (sorting estimators).
    se_method : {"bootstrap", "analytic"}
        SE of the weighted and simple median: the parametric bootstrap of the R packages, or the
        analytic (asymptotic) SE of :func:`median_analytic_se`, which needs no draws (``n_boot``
        and ``seed`` are then unused). The weighted mode has the bootstrap only.

    Returns
    -------
    MRBatchResult
        Arrays of the broadcast leading shape ``(...)``; NaN with a reason code in
        ``mr.REASONS`` for degenerate cells.

    Raises
    ------
    DeepMRInputError
        Unknown method or options, or arrays that do not broadcast.
    """
    opts = dataclasses.replace(
        _check_options(method, level, n_boot, seed, weights, phi, se_method),
        drop_invalid=drop_invalid,
        progress=progress,
    )
    cells, squeeze = _cells(bx, by, se_bx, se_by, mask)
    if METHOD_TABLE[method].closed_form:
        out, n, reason = _closed_form(method, cells, opts)
    else:
        out, n, reason = _sorted_methods(method, cells, opts)
    return _batch_result(method, out, n, reason, cells.lead, opts.level, squeeze)


def _check_options(method, level, n_boot, seed, weights, phi, se_method) -> _Options:
    C.check_method(method)
    level = validation.level(level)
    if METHOD_TABLE[method].ratio:
        n_boot = C.check_n_boot(n_boot)
        C.seed_sequence(seed)
        weights = C.check_weights(weights)
        phi = C.check_phi(phi)
    se_method = choice(se_method, ("bootstrap", "analytic"), "se_method")
    if se_method == "analytic" and METHOD_TABLE[method].batched != "median":
        raise DeepMRInputError(
            f"se_method='analytic' is available for weighted_median and simple_median, not "
            f"{method}; use se_method='bootstrap'"
        )
    return _Options(
        level=level,
        drop_invalid=False,
        n_boot=n_boot,
        seed=seed,
        weights=weights,
        phi=phi,
        se_method=se_method,
    )


def _cells(bx, by, se_bx, se_by, mask) -> tuple[_Cells, bool]:
    """The arrays as float64 with their broadcast shape; a single cell gets a leading axis (the
    second value says so)."""
    arrays = [np.asarray(a, dtype=np.float64) for a in (bx, by, se_bx, se_by)]
    m = None if mask is None else np.asarray(mask, dtype=bool)
    shapes = [a.shape for a in arrays] + ([] if m is None else [m.shape])
    if any(len(sh) == 0 for sh in shapes):
        raise DeepMRInputError(
            "bx, by, se_bx, se_by and mask need an instrument axis (last axis, length K)."
        )
    try:
        full = np.broadcast_shapes(*shapes)
    except ValueError:
        raise DeepMRInputError(
            f"shapes {shapes} of bx, by, se_bx, se_by (and mask) do not broadcast; give arrays "
            "shaped (..., K), e.g. bx (N, E, 1, K) and by (N, 1, O, K)."
        ) from None
    squeeze = len(full) == 1
    if squeeze:
        arrays = [a[None] for a in arrays]
        m = None if m is None else m[None]
        full = (1,) + full
    return _Cells(*arrays, m, full[:-1], full[-1]), squeeze


def _batch_result(method, out, n, reason, lead, level, squeeze) -> MRBatchResult:
    bad = reason != C.OK
    fields = {}
    for name in BATCH_FLOAT_FIELDS:
        value = np.array(np.broadcast_to(out.get(name, np.nan), lead), dtype=np.float64)
        value[bad] = np.nan
        fields[name] = value
    n = np.broadcast_to(n, lead).astype(np.int64)
    reason = np.broadcast_to(reason, lead).astype(np.int8)
    if squeeze:
        fields = {name: v[0] for name, v in fields.items()}
        n, reason = n[0], reason[0]
    n_bad = int(np.count_nonzero(reason))
    if n_bad:
        logger.info(
            "MR %s: %d of %d cells undefined (NaN), see reason codes", method, n_bad, reason.size
        )
    return MRBatchResult(method=method, level=level, n_instruments=n, reason=reason, **fields)
